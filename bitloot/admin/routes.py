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
    FulfillmentTimelineOut,
    PaymentDetailOut,
    PaymentListQuery,
    PaymentPageOut,
    ReasonIn,
    ResendOut,
    RetryOut,
)
from bitloot.db.connect import set_actor
from bitloot.web.bodies import read_model
from bitloot.web.context import resources
from bitloot.web.contract import Handler, Ok, Param, authenticated, operation
from bitloot.web.cursor import InvalidCursor
from bitloot.web.errors import Conflict, NotFound, UnprocessableEntity
from bitloot.web.ids import ORDER_ID, parse_order_id
from bitloot.web.problems import BAD_JSON, INVALID, TOO_LARGE

routes = web.RouteTableDef()
log = structlog.get_logger(__name__)

ModelT = TypeVar("ModelT", bound=BaseModel)
_MAX_PAYMENT_ID = 200
_NO_STORE = {"Cache-Control": "no-store"}

NO_ORDER = "No such order."

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
