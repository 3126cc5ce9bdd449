"""`POST /orders`, `GET /orders` and `GET /orders/{id}`: thin handlers over the order service."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import structlog
from aiohttp import web

from bitloot.api.bodies import read_model
from bitloot.api.context import ApiContext, context
from bitloot.api.errors import BadGateway, BadRequest, NotFound, Unauthorized, UnprocessableEntity
from bitloot.api.ratelimit import limit_order_creation
from bitloot.auth.http import authenticate, authenticate_optional
from bitloot.db.connect import set_actor
from bitloot.orders import listing, service
from bitloot.orders.models import PRODUCT_ID_PATTERN, CreatedOrderOut, CreateOrderIn
from bitloot.payments.nowpayments import NowPaymentsError

routes = web.RouteTableDef()
log = structlog.get_logger(__name__)

MAX_IDEMPOTENCY_KEY = 200
PRODUCT_ID = re.compile(PRODUCT_ID_PATTERN)


@routes.post("/orders")
async def create_order(request: web.Request) -> web.Response:
    """Create an order priced on the server, open its NOWPayments invoice, return both."""
    ctx = context(request)
    await limit_order_creation(request)
    principal = await authenticate_optional(request, ctx.verifier)
    user_id = principal.subject if principal and principal.kind in ("user", "admin") else None
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (1 <= len(key) <= MAX_IDEMPOTENCY_KEY and _storable(key)):
        raise UnprocessableEntity([{"loc": ["header", "Idempotency-Key"], "msg": "1 to 200 chars"}])
    try:
        body = await read_model(request, CreateOrderIn)
    except UnprocessableEntity as exc:
        # List the catalog problems too (unknown, inactive, repeated products), not only
        # the shape ones: the client learns everything wrong with the order at once.
        named = _named_products(json.loads(await request.read()))
        if not named:
            raise
        async with ctx.pool.connection() as conn:
            more = await service.product_problems(conn, named)
        raise UnprocessableEntity([*exc.errors, *more]) from None

    async with ctx.pool.connection() as conn, conn.transaction():
        await set_actor(conn, f"user:{user_id}" if user_id else "guest")
        try:
            priced = await service.price_order(conn, body)
        except service.OrderRejected as exc:
            raise UnprocessableEntity(exc.problems) from None
        order_id, created = await service.insert_order(
            conn, priced=priced, email=str(body.email), user_id=user_id, idempotency_key=key
        )
        stored = await service.get_order(conn, order_id, service.Access(is_admin=True))
    assert stored is not None
    if not created and not _same_order(stored, body, user_id):
        raise UnprocessableEntity(
            [{"loc": ["header", "Idempotency-Key"], "msg": "already used for another order"}]
        )
    invoice_url = stored.view.invoiceUrl
    if stored.view.status == "created":
        invoice_url = await _open_invoice(
            ctx, order_id, stored.view.totalAmount, stored.view.currency
        )
    answer = CreatedOrderOut(
        id=order_id,
        status="waiting" if stored.view.status == "created" else stored.view.status,
        totalAmount=stored.view.totalAmount,
        currency=stored.view.currency,
        invoiceUrl=invoice_url,
        accessToken=ctx.verifier.mint_order_token(order_id),
    )
    log.info("order.created" if created else "order.replayed", order_id=str(order_id))
    return web.json_response(
        answer.model_dump(mode="json"),
        status=201,
        headers={"Location": f"/orders/{order_id}"},
    )


async def _open_invoice(ctx: ApiContext, order_id: uuid.UUID, total: object, currency: str) -> str:
    """Ask NOWPayments for the invoice (outside any transaction) and record the answer."""
    public = ctx.settings.public_url
    try:
        invoice = await ctx.nowpayments.create_invoice(
            price_amount=total,  # type: ignore[arg-type]
            price_currency=currency,
            order_id=str(order_id),
            order_description=f"BitLoot order {order_id}",
            ipn_callback_url=f"{public}/webhooks/nowpayments",
            # No token here: this URL is shown to NOWPayments; the key page asks for the link.
            success_url=f"{public}/orders/{order_id}/key",
        )
    except NowPaymentsError as exc:
        async with ctx.pool.connection() as conn, conn.transaction():
            await service.record_invoice_error(
                conn, order_id, f"NOWPayments {exc.code or exc.status or 'error'}"
            )
        log.warning("order.invoice_failed", order_id=str(order_id), code=exc.code)
        raise BadGateway(
            "The payment provider did not create the invoice; retry the same request "
            "(with the same Idempotency-Key) shortly.",
            retry_after=exc.retry_after or 5,
        ) from None
    async with ctx.pool.connection() as conn, conn.transaction():
        await set_actor(conn, "api", "invoice created")
        if not await service.record_invoice(conn, order_id, invoice.id, invoice.invoice_url):
            # A concurrent replay of the same Idempotency-Key recorded its invoice first:
            # answer with that one, the invoice the order is bound to (ours stays unused).
            stored = await service.get_order(conn, order_id, service.Access(is_admin=True))
            if stored is not None and stored.view.invoiceUrl:
                log.warning("order.invoice_superseded", order_id=str(order_id))
                return stored.view.invoiceUrl
    return invoice.invoice_url


def _same_order(stored: service.StoredOrder, body: CreateOrderIn, user_id: str | None) -> bool:
    """Whether a replayed `POST /orders` asks for the order its Idempotency-Key made."""
    asked = sorted((item.productId, item.qty) for item in body.items)
    made = sorted((item.productId, item.qty) for item in stored.view.items)
    return (stored.view.email, stored.user_id, made) == (str(body.email), user_id, asked)


@routes.get("/orders")
async def list_orders(request: web.Request) -> web.Response:
    """The caller's own orders, newest first: `?cursor=&limit=` (1 to 100, default 20)."""
    ctx = context(request)
    principal = await authenticate(request, ctx.verifier)
    if principal.kind == "order_token":
        # An order token opens one order; listing needs to know who the customer is.
        raise Unauthorized("Listing orders needs a customer token.", invalid_token=True)
    limit = _page_limit(request.query.get("limit"))
    cursor = request.query.get("cursor")
    try:
        after = listing.decode_cursor(cursor) if cursor else None
    except listing.BadCursor:
        raise BadRequest("The cursor is malformed; use nextCursor from a previous page.") from None
    async with ctx.pool.connection() as conn:
        page = await listing.list_user_orders(conn, principal.subject, after=after, limit=limit)
    return web.json_response(page.model_dump(mode="json"), headers={"Cache-Control": "no-store"})


def _page_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return listing.DEFAULT_LIMIT
    if len(raw) <= 3 and raw.isascii() and raw.isdigit() and 1 <= int(raw) <= listing.MAX_LIMIT:
        return int(raw)
    raise UnprocessableEntity(
        [{"loc": ["query", "limit"], "msg": f"an integer from 1 to {listing.MAX_LIMIT}"}]
    )


@routes.get("/orders/{order_id}")
async def get_order(request: web.Request) -> web.Response:
    """The order and its statuses, for its owner, its order token, or an admin."""
    ctx = context(request)
    principal = await authenticate(request, ctx.verifier)
    order_id = parse_order_id(request)
    async with ctx.pool.connection() as conn:
        stored = await service.get_order(conn, order_id, service.Access.of(principal))
    if stored is None:
        raise NotFound("No such order.")
    return web.json_response(stored.view.model_dump(mode="json"))


def _named_products(data: Any) -> list[tuple[int, str]]:
    """`(index, productId)` of each item of a raw body whose productId is well-formed."""
    items = data.get("items") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return []
    named = []
    for index, item in enumerate(items):
        product_id = item.get("productId") if isinstance(item, dict) else None
        if isinstance(product_id, str) and PRODUCT_ID.match(product_id):
            named.append((index, product_id))
    return named


def _storable(text: str) -> bool:
    """Header bytes that are not UTF-8 arrive surrogate-escaped; PostgreSQL takes none."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def parse_order_id(request: web.Request) -> uuid.UUID:
    """The `{order_id}` path segment; a malformed id is the same 404 as a missing order."""
    try:
        return uuid.UUID(request.match_info["order_id"])
    except ValueError:
        raise NotFound("No such order.") from None
