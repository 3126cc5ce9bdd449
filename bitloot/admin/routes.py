"""Admin HTTP endpoints (role=admin): thin handlers over `repository` (reads) and `service`
(repairs).

Every operation is declared `admin`, so it authenticates first (no token 401, a non-admin
token 403), and every answer is JSON marked `Cache-Control: no-store`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import structlog
from aiohttp import web
from pydantic import BaseModel, ValidationError

from bitloot.admin import repository, service
from bitloot.admin.models import (
    AcceptanceOut,
    DueOrderOut,
    FulfillmentTimelineOut,
    KeyReplacementOut,
    KeyReplacementsOut,
    PaymentDetailOut,
    PaymentListQuery,
    PaymentPageOut,
    ReasonIn,
    RefundIn,
    RefundOut,
    RefundsDuePageOut,
    RefundsDueQuery,
    ReplaceKeyIn,
    ResendOut,
    RetryOut,
)
from bitloot.db.connect import set_actor
from bitloot.fulfillment import service as fulfillment
from bitloot.payments import service as payments
from bitloot.text import is_storable
from bitloot.web.bodies import read_model
from bitloot.web.context import resources
from bitloot.web.contract import Handler, Ok, Param, authenticated, operation
from bitloot.web.cursor import InvalidCursor, Position, decode_cursor, encode_cursor
from bitloot.web.errors import Conflict, NotFound, UnprocessableEntity
from bitloot.web.ids import ORDER_ID, parse_order_id
from bitloot.web.problems import BAD_JSON, INVALID, TOO_LARGE

routes = web.RouteTableDef()
log = structlog.get_logger(__name__)

ModelT = TypeVar("ModelT", bound=BaseModel)
_MAX_PAYMENT_ID = 200
_NO_STORE = {"Cache-Control": "no-store"}

NO_ORDER = "No such order."
NO_KEY = "No such order, or the order has no such key."
MAX_KEY_ID = 200
KEY_ID = Param(
    "key_id",
    "path",
    {"type": "string", "minLength": 1, "maxLength": MAX_KEY_ID},
    "The key's id (`keyId`, Kinguin's key id).",
    True,
)

admin_operation = partial(operation, tag="admin", security="admin")


def repair_operation(
    summary: str, ok: Ok
) -> Callable[[Handler[web.Response]], Handler[web.Response]]:
    """A repair's contract: an order, the admin's reason, an order state it applies to."""
    return admin_operation(
        summary,
        params=(ORDER_ID,),
        body=ReasonIn,
        ok=ok,
        problems={
            400: BAD_JSON,
            404: NO_ORDER,
            409: "The order is not in a state this repair applies to.",
            413: TOO_LARGE,
            422: INVALID,
        },
    )


@routes.get("/admin/payments")
@admin_operation(
    "Payments, newest first, filtered",
    query=PaymentListQuery,
    ok=Ok(200, "One page of payments.", PaymentPageOut),
    problems={422: "An unknown, repeated or invalid parameter, or a foreign cursor."},
)
async def list_payments(request: web.Request) -> web.Response:
    """Payments newest first, keyset-paginated, filtered by status, date range and email."""
    query = _read_query(request, PaymentListQuery)
    async with resources(request).pool.connection() as conn:
        try:
            page = await repository.list_payments(conn, query)
        except InvalidCursor as exc:
            raise UnprocessableEntity([{"loc": ["query", "cursor"], "msg": str(exc)}]) from None
    return _json(page)


@routes.get("/admin/payments/{payment_id}")
@admin_operation(
    "A payment with its IPN history",
    params=(
        Param(
            "payment_id",
            "path",
            {"type": "string", "minLength": 1, "maxLength": _MAX_PAYMENT_ID},
            "The NOWPayments payment id.",
        ),
    ),
    ok=Ok(200, "The payment and every IPN for it.", PaymentDetailOut),
    problems={404: "No such payment."},
)
async def get_payment(request: web.Request) -> web.Response:
    """A payment with every IPN received for it, raw bodies included."""
    payment_id = request.match_info["payment_id"]
    if len(payment_id) > _MAX_PAYMENT_ID or "\x00" in payment_id:  # no such id can exist
        raise NotFound("No such payment.")
    async with resources(request).pool.connection() as conn, conn.transaction():
        await repository.read_from_one_snapshot(conn)
        detail = await repository.payment_detail(conn, payment_id)
    if detail is None:
        raise NotFound("No such payment.")
    return _json(detail)


@routes.get("/admin/orders/{order_id}/fulfillment")
@admin_operation(
    "The order's fulfillment timeline",
    params=(ORDER_ID,),
    ok=Ok(200, "Everything that happened to the order.", FulfillmentTimelineOut),
    problems={404: NO_ORDER},
)
async def get_fulfillment_timeline(request: web.Request) -> web.Response:
    """The order's fulfillment timeline, read from one snapshot."""
    order_id = parse_order_id(request)
    async with resources(request).pool.connection() as conn, conn.transaction():
        await repository.read_from_one_snapshot(conn)
        timeline = await repository.fulfillment_timeline(conn, order_id)
    if timeline is None:
        raise NotFound("No such order.")
    return _json(timeline)


@routes.post("/admin/orders/{order_id}/fulfillment/retry")
@repair_operation("Queue a failed fulfillment again (audited)", Ok(202, "Queued again.", RetryOut))
async def retry_fulfillment(request: web.Request) -> web.Response:
    """Queue a failed fulfillment again (failed -> pending), audited with the admin's reason."""
    admin = authenticated(request)
    order_id = parse_order_id(request)
    body = await read_model(request, ReasonIn)
    async with resources(request).pool.connection() as conn, conn.transaction():
        await set_actor(conn, f"admin:{admin.subject}", body.reason)
        try:
            await service.retry_fulfillment(
                conn, order_id, admin_id=admin.subject, reason=body.reason
            )
        except (service.OrderNotFound, service.NotRepairable) as exc:
            raise _repair_error(exc) from None
    log.info("admin.fulfillment_retried", order_id=str(order_id), admin_id=admin.subject)
    return _json(RetryOut(orderId=order_id, fulfillmentStatus="pending"), status=202)


@routes.post("/admin/orders/{order_id}/delivery-email/resend")
@repair_operation(
    "Queue the delivery email again (audited)",
    Ok(
        202,
        "The next generation of the email is queued; the earlier emails' links are revoked.",
        ResendOut,
    ),
)
async def resend_delivery_email(request: web.Request) -> web.Response:
    """Queue the next generation of a fulfilled order's delivery email, audited; the links
    the earlier emails carried stop working."""
    admin = authenticated(request)
    order_id = parse_order_id(request)
    body = await read_model(request, ReasonIn)
    async with resources(request).pool.connection() as conn, conn.transaction():
        await set_actor(conn, f"admin:{admin.subject}", body.reason)
        try:
            resend = await service.resend_delivery_email(
                conn, order_id, admin_id=admin.subject, reason=body.reason
            )
        except (service.OrderNotFound, service.NotRepairable) as exc:
            raise _repair_error(exc) from None
    log.info(
        "admin.delivery_email_resent",
        order_id=str(order_id),
        admin_id=admin.subject,
        generation=resend.generation,
        revoked_links=resend.revoked_links,
    )
    answer = ResendOut(
        orderId=order_id,
        outboxId=resend.outbox_id,
        generation=resend.generation,
        revokedLinks=resend.revoked_links,
    )
    return _json(answer, status=202)


class NotRefundable(Conflict):
    """409: the order's status does not allow a refund (or not yet)."""

    slug = "not-refundable"
    title = "Order cannot be refunded"


class RefundMismatch(Conflict):
    """409: the order was already refunded with another reference or amount."""

    slug = "refund-mismatch"
    title = "Order already refunded differently"


class NotUnderpaid(Conflict):
    """409: only an underpaid order's payment can be accepted."""

    slug = "not-underpaid"
    title = "Order is not underpaid"


# A purchase in flight ends within a few polls of Kinguin: try the refund again after it.
REFUND_RETRY_AFTER = 60


@routes.post("/admin/orders/{order_id}/refund")
@admin_operation(
    "Record an order's refund: refunded, keys and links revoked, customer told (audited)",
    params=(ORDER_ID,),
    body=RefundIn,
    ok=Ok(
        201,
        "Refunded: the order is `refunded`, its keys and access links are revoked, the "
        "refund notice is queued and Kinguin is asked to take the keys back.",
        RefundOut,
        also={200: "Already refunded with this reference: nothing changed."},
    ),
    problems={
        400: BAD_JSON,
        404: NO_ORDER,
        409: "The order cannot be refunded (its status, or a purchase in flight: retry "
        "after `Retry-After`), or it was refunded with another reference or amount.",
        413: TOO_LARGE,
        422: "Invalid body, or an amount not more than 0, above the order total, or "
        "missing when nothing is known to have arrived.",
    },
)
async def refund_order(request: web.Request) -> web.Response:
    """Record the payout made in NOWPayments' dashboard as the order's refund, once."""
    admin = authenticated(request)
    order_id = parse_order_id(request)
    body = await read_model(request, RefundIn)
    async with resources(request).pool.connection() as conn, conn.transaction():
        await set_actor(conn, f"admin:{admin.subject}", body.reason)
        try:
            done = await service.refund_order(
                conn,
                order_id,
                admin_id=admin.subject,
                reason=body.reason,
                reference=body.reference,
                amount=body.amount,
            )
        except payments.OrderNotFound:
            raise NotFound(NO_ORDER) from None
        except payments.RefundConflict as exc:
            raise RefundMismatch(str(exc), extras={"refund": _refund(exc.existing)}) from None
        except payments.NotSettleable as exc:
            raise NotRefundable(
                str(exc),
                retry_after=REFUND_RETRY_AFTER if exc.retry_later else None,
                extras={"orderStatus": exc.status, "fulfillmentStatus": exc.fulfillment_status},
            ) from None
        except payments.BadAmount as exc:
            raise UnprocessableEntity([{"loc": ["body", "amount"], "msg": str(exc)}]) from None
    if done.created:
        log.info("admin.order_refunded", order_id=str(order_id), admin_id=admin.subject,
                 refund_id=done.refund.id, revoked_keys=done.revoked_keys)  # fmt: skip
    return _json(
        RefundOut.model_validate(_refund(done.refund)), status=201 if done.created else 200
    )


@routes.post("/admin/orders/{order_id}/accept-payment")
@admin_operation(
    "Accept an underpaid order's payment: paid, fulfillment queued (audited)",
    params=(ORDER_ID,),
    body=ReasonIn,
    ok=Ok(
        200,
        "Accepted (or already accepted): the order is paid and its fulfillment queued.",
        AcceptanceOut,
    ),
    problems={
        400: BAD_JSON,
        404: NO_ORDER,
        409: "The order is not underpaid.",
        413: TOO_LARGE,
        422: INVALID,
    },
)
async def accept_payment(request: web.Request) -> web.Response:
    """Count an underpaid order as paid on the admin's word (the audited evidence), and
    queue its fulfillment in the same transaction."""
    admin = authenticated(request)
    order_id = parse_order_id(request)
    body = await read_model(request, ReasonIn)
    async with resources(request).pool.connection() as conn, conn.transaction():
        await set_actor(conn, f"admin:{admin.subject}", body.reason)
        try:
            done = await service.accept_payment(
                conn, order_id, admin_id=admin.subject, reason=body.reason
            )
        except payments.OrderNotFound:
            raise NotFound(NO_ORDER) from None
        except payments.NotSettleable as exc:
            raise NotUnderpaid(
                str(exc),
                extras={"orderStatus": exc.status, "fulfillmentStatus": exc.fulfillment_status},
            ) from None
    if done.created:
        log.info("admin.payment_accepted", order_id=str(order_id), admin_id=admin.subject,
                 acceptance_id=done.acceptance.id)  # fmt: skip
    acceptance = done.acceptance
    answer = AcceptanceOut(
        acceptanceId=acceptance.id,
        orderId=order_id,
        orderStatus=done.status,
        fulfillmentStatus=done.fulfillment_status,
        amountReceived=payments.cents(done.received),
        currency=done.currency,
        adminId=acceptance.admin_id,
        reason=acceptance.reason,
        acceptedAt=acceptance.accepted_at,
    )
    return _json(answer)


@routes.get("/admin/refunds-due")
@admin_operation(
    "Orders whose money an admin must settle: paid and undeliverable, or underpaid",
    query=RefundsDueQuery,
    ok=Ok(200, "One page, newest first.", RefundsDuePageOut),
    problems={422: "An unknown, repeated or invalid parameter, or a foreign cursor."},
)
async def refunds_due(request: web.Request) -> web.Response:
    """The `refunds_due` view, keyset-paginated on (since, order id), newest first."""
    query = _read_query(request, RefundsDueQuery)
    try:
        after = decode_cursor(query.cursor) if query.cursor is not None else None
    except InvalidCursor as exc:
        raise UnprocessableEntity([{"loc": ["query", "cursor"], "msg": str(exc)}]) from None
    async with resources(request).pool.connection() as conn:
        rows, more = await payments.refunds_due(conn, after=after, limit=query.limit)
    items = [
        DueOrderOut(
            orderId=row.order_id,
            status=row.status,
            fulfillmentStatus=row.fulfillment_status,
            why=row.why,
            email=row.email,
            currency=row.currency,
            totalAmount=payments.cents(row.total_amount),
            amountDue=payments.cents(row.amount_due),
            actuallyPaid=None if row.actually_paid is None else f"{row.actually_paid:f}",
            payCurrency=row.pay_currency,
            since=row.since,
        )
        for row in rows
    ]
    next_cursor = encode_cursor(Position(items[-1].since, str(items[-1].orderId))) if more else None
    return _json(RefundsDuePageOut(items=items, nextCursor=next_cursor))


@routes.post("/admin/orders/{order_id}/keys/{key_id}/replace")
@admin_operation(
    "Replace a faulty key (audited)",
    params=(ORDER_ID, KEY_ID),
    body=ReplaceKeyIn,
    ok=Ok(
        202,
        "Queued: one replacement is bought from Kinguin and delivered; the faulty key is "
        "revoked when the new one is live, and the customer is emailed.",
        KeyReplacementOut,
        also={200: "The key was already being replaced (or was): that replacement, as it is."},
    ),
    problems={
        400: BAD_JSON,
        404: NO_KEY,
        409: "The order is not fulfilled (e.g. refunded) or the key is revoked.",
        413: TOO_LARGE,
        422: INVALID,
    },
)
async def replace_key(request: web.Request) -> web.Response:
    """Queue the replacement of one key of a fulfilled order (at most one per key), audited
    with the admin's reason; a repeated request answers with the existing replacement."""
    admin = authenticated(request)
    order_id = parse_order_id(request)
    key_id = _key_id_path(request)
    body = await read_model(request, ReplaceKeyIn)
    async with resources(request).pool.connection() as conn, conn.transaction():
        await set_actor(conn, f"admin:{admin.subject}", body.reason)
        try:
            found, created = await service.replace_key(
                conn, order_id, key_id, admin_id=admin.subject, reason=body.reason
            )
        except fulfillment.ReplacementNotFound as exc:
            raise NotFound(str(exc)) from None
        except fulfillment.NotReplaceable as exc:
            raise Conflict(str(exc), extras=exc.extras) from None
    log.info(
        "admin.key_replacement_requested" if created else "admin.key_replacement_exists",
        order_id=str(order_id),
        admin_id=admin.subject,
        replacement_id=found.id,
    )
    return web.json_response(
        _replacement_out(found).model_dump(mode="json"),
        status=202 if created else 200,
        headers=_NO_STORE,
    )


@routes.get("/admin/orders/{order_id}/key-replacements")
@admin_operation(
    "The order's key replacements",
    params=(ORDER_ID,),
    ok=Ok(200, "Every replacement of the order's keys, oldest first.", KeyReplacementsOut),
    problems={404: "No such order."},
)
async def list_key_replacements(request: web.Request) -> web.Response:
    """Every replacement of the order's keys with its status and, when failed, why."""
    order_id = parse_order_id(request)
    async with resources(request).pool.connection() as conn:
        found = await fulfillment.replacements_of(conn, order_id)
    if found is None:
        raise NotFound("No such order.")
    out = KeyReplacementsOut(items=[_replacement_out(r) for r in found])
    return web.json_response(out.model_dump(mode="json"), headers=_NO_STORE)


def _key_id_path(request: web.Request) -> str:
    """The `{key_id}` path segment; one no key can have is the same 404 as a missing key."""
    key_id = request.match_info["key_id"]
    if not 1 <= len(key_id) <= MAX_KEY_ID or not is_storable(key_id):
        raise NotFound(NO_KEY)
    return key_id


def _replacement_out(r: fulfillment.Replacement) -> KeyReplacementOut:
    return KeyReplacementOut(
        replacementId=r.id,
        orderId=r.order_id,
        keyId=r.key_id,
        number=r.number,
        status=r.status,
        orderExternalId=r.external_id,
        kinguinOrderId=r.kinguin_order_id,
        newKeyId=r.new_key_id,
        error=r.error,
        adminId=r.admin_id,
        reason=r.reason,
        createdAt=r.created_at,
        updatedAt=r.updated_at,
    )


def _refund(refund: payments.Refund) -> dict[str, Any]:
    return {
        "refundId": refund.id,
        "orderId": str(refund.order_id),
        "orderStatus": "refunded",
        "amount": payments.cents(refund.amount),
        "currency": refund.currency,
        "reference": refund.reference,
        "reason": refund.reason,
        "adminId": refund.admin_id,
        "createdAt": refund.created_at.isoformat(),
    }


def _read_query(request: web.Request, model: type[ModelT]) -> ModelT:
    """The query string as `model`: 422 for a repeated, unknown or invalid parameter."""
    values: dict[str, Any] = {}
    for name in request.query:
        if name in values:
            raise UnprocessableEntity([{"loc": ["query", name], "msg": "given more than once"}])
        values[name] = request.query[name]
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise UnprocessableEntity.from_validation_error(exc, location="query") from None


def _repair_error(exc: Exception) -> Exception:
    if isinstance(exc, service.NotRepairable):
        return Conflict(
            str(exc),
            extras={
                "orderStatus": exc.state.status,
                "fulfillmentStatus": exc.state.fulfillment_status,
            },
        )
    return NotFound("No such order.")


def _json(model: BaseModel, *, status: int = 200) -> web.Response:
    return web.json_response(model.model_dump(mode="json"), status=status, headers=_NO_STORE)
