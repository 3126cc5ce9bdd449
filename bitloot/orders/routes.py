"""`POST /orders`, `GET /orders` and `GET /orders/{id}`: thin handlers over the order service."""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from bitloot.orders import service
from bitloot.orders.models import PRODUCT_ID_PATTERN, CreateOrderIn
from bitloot.web.auth import authenticate, authenticate_optional
from bitloot.web.bodies import read_model
from bitloot.web.context import resources
from bitloot.web.cursor import InvalidCursor
from bitloot.web.errors import BadGateway, BadRequest, NotFound, Unauthorized, UnprocessableEntity
from bitloot.web.ids import parse_order_id
from bitloot.web.ratelimit import limit_order_creation

routes = web.RouteTableDef()

MAX_IDEMPOTENCY_KEY = 200
PRODUCT_ID = re.compile(PRODUCT_ID_PATTERN)


@routes.post("/orders")
async def create_order(request: web.Request) -> web.Response:
    """Create an order priced on the server, open its NOWPayments invoice, return both."""
    res = resources(request)
    await limit_order_creation(request)
    principal = await authenticate_optional(request, res.tokens)
    user_id = principal.subject if principal and principal.kind in ("user", "admin") else None
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (1 <= len(key) <= MAX_IDEMPOTENCY_KEY and _storable(key)):
        raise UnprocessableEntity([{"loc": ["header", "Idempotency-Key"], "msg": "1 to 200 chars"}])
    body = await _read_order(request)
    try:
        answer, _ = await service.create_order(res, body, user_id=user_id, idempotency_key=key)
    except service.OrderRejected as exc:
        raise UnprocessableEntity(exc.problems) from None
    except service.IdempotencyKeyReused:
        raise UnprocessableEntity(
            [{"loc": ["header", "Idempotency-Key"], "msg": "already used for another order"}]
        ) from None
    except service.InvoiceFailed as exc:
        raise BadGateway(
            "The payment provider did not create the invoice; retry the same request "
            "(with the same Idempotency-Key) shortly.",
            retry_after=exc.retry_after,
        ) from None
    return web.json_response(
        answer.model_dump(mode="json"),
        status=201,
        headers={"Location": f"/orders/{answer.id}"},
    )


async def _read_order(request: web.Request) -> CreateOrderIn:
    """The body as `CreateOrderIn`; a 422 also lists the catalog problems (unknown,
    inactive, repeated products), so the client learns everything wrong at once."""
    try:
        return await read_model(request, CreateOrderIn)
    except UnprocessableEntity as exc:
        named = _named_products(json.loads(await request.read()))
        if not named:
            raise
        async with resources(request).pool.connection() as conn:
            more = await service.product_problems(conn, named)
        raise UnprocessableEntity([*exc.errors, *more]) from None


@routes.get("/orders")
async def list_orders(request: web.Request) -> web.Response:
    """The caller's own orders, newest first: `?cursor=&limit=` (1 to 100, default 20)."""
    res = resources(request)
    principal = await authenticate(request, res.tokens)
    if principal.kind == "order_token":
        # An order token opens one order; listing needs to know who the customer is.
        raise Unauthorized("Listing orders needs a customer token.", invalid_token=True)
    limit = _page_limit(request.query.get("limit"))
    async with res.pool.connection() as conn:
        try:
            page = await service.list_user_orders(
                conn, principal.subject, cursor=request.query.get("cursor"), limit=limit
            )
        except InvalidCursor:
            raise BadRequest(
                "The cursor is malformed; use nextCursor from a previous page."
            ) from None
    return web.json_response(page.model_dump(mode="json"), headers={"Cache-Control": "no-store"})


def _page_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return service.DEFAULT_PAGE
    if len(raw) <= 3 and raw.isascii() and raw.isdigit() and 1 <= int(raw) <= service.MAX_PAGE:
        return int(raw)
    raise UnprocessableEntity(
        [{"loc": ["query", "limit"], "msg": f"an integer from 1 to {service.MAX_PAGE}"}]
    )


@routes.get("/orders/{order_id}")
async def get_order(request: web.Request) -> web.Response:
    """The order and its statuses, for its owner, its order token, or an admin."""
    res = resources(request)
    principal = await authenticate(request, res.tokens)
    order_id = parse_order_id(request)
    async with res.pool.connection() as conn:
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
