"""Admin HTTP endpoints (role=admin): thin handlers over `repository` (reads) and `service`
(repairs).

Every handler authenticates first (no token 401, a non-admin token 403), and every answer
is JSON marked `Cache-Control: no-store`.
"""

from __future__ import annotations

from typing import Any, TypeVar

import structlog
from aiohttp import web
from pydantic import BaseModel, ValidationError

from bitloot.admin import repository, service
from bitloot.admin.models import PaymentListQuery, ReasonIn, ResendOut, RetryOut
from bitloot.auth.tokens import Principal
from bitloot.db.connect import set_actor
from bitloot.web.auth import authenticate, require_admin
from bitloot.web.bodies import read_model
from bitloot.web.context import resources
from bitloot.web.cursor import InvalidCursor
from bitloot.web.errors import Conflict, NotFound, UnprocessableEntity
from bitloot.web.ids import parse_order_id

routes = web.RouteTableDef()
log = structlog.get_logger(__name__)

ModelT = TypeVar("ModelT", bound=BaseModel)
_MAX_PAYMENT_ID = 200
_NO_STORE = {"Cache-Control": "no-store"}


@routes.get("/admin/payments")
async def list_payments(request: web.Request) -> web.Response:
    """Payments newest first, keyset-paginated, filtered by status, date range and email."""
    await _admin(request)
    query = _read_query(request, PaymentListQuery)
    async with resources(request).pool.connection() as conn:
        try:
            page = await repository.list_payments(conn, query)
        except InvalidCursor as exc:
            raise UnprocessableEntity([{"loc": ["query", "cursor"], "msg": str(exc)}]) from None
    return _json(page)


@routes.get("/admin/payments/{payment_id}")
async def get_payment(request: web.Request) -> web.Response:
    """A payment with every IPN received for it, raw bodies included."""
    await _admin(request)
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
async def get_fulfillment_timeline(request: web.Request) -> web.Response:
    """The order's fulfillment timeline, read from one snapshot."""
    await _admin(request)
    order_id = parse_order_id(request)
    async with resources(request).pool.connection() as conn, conn.transaction():
        await repository.read_from_one_snapshot(conn)
        timeline = await repository.fulfillment_timeline(conn, order_id)
    if timeline is None:
        raise NotFound("No such order.")
    return _json(timeline)


@routes.post("/admin/orders/{order_id}/fulfillment/retry")
async def retry_fulfillment(request: web.Request) -> web.Response:
    """Queue a failed fulfillment again (failed -> pending), audited with the admin's reason."""
    admin = await _admin(request)
    order_id = parse_order_id(request)
    body = _no_nul(await read_model(request, ReasonIn))
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
async def resend_delivery_email(request: web.Request) -> web.Response:
    """Queue the next generation of a fulfilled order's delivery email, audited."""
    admin = await _admin(request)
    order_id = parse_order_id(request)
    body = _no_nul(await read_model(request, ReasonIn))
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
    )
    answer = ResendOut(orderId=order_id, outboxId=resend.outbox_id, generation=resend.generation)
    return _json(answer, status=202)


async def _admin(request: web.Request) -> Principal:
    return require_admin(await authenticate(request, resources(request).tokens))


def _read_query(request: web.Request, model: type[ModelT]) -> ModelT:
    """The query string as `model`: 422 for a repeated, unknown or invalid parameter."""
    values: dict[str, Any] = {}
    for name in request.query:
        if name in values:
            raise UnprocessableEntity([{"loc": ["query", name], "msg": "given more than once"}])
        if "\x00" in request.query[name]:  # `%00`: PostgreSQL text cannot hold it (a 500)
            raise UnprocessableEntity([{"loc": ["query", name], "msg": "contains NUL"}])
        values[name] = request.query[name]
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise UnprocessableEntity.from_validation_error(exc, location="query") from None


def _no_nul(body: ReasonIn) -> ReasonIn:
    """JSON can carry `\\u0000`, which PostgreSQL text cannot hold (a 500 otherwise)."""
    if "\x00" in body.reason:
        raise UnprocessableEntity([{"loc": ["body", "reason"], "msg": "contains NUL"}])
    return body


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
