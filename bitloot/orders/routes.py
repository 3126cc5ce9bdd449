"""`POST /orders`, `GET /orders` and `GET /orders/{id}`: thin handlers over the order service."""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from bitloot.orders import service
from bitloot.orders.models import (
    PRODUCT_ID_PATTERN,
    SUPPORTED_LOCALES,
    CreatedOrderOut,
    CreateOrderIn,
    OrderOut,
    OrderPageOut,
)
from bitloot.text import is_storable
from bitloot.web.bodies import read_model
from bitloot.web.context import resources
from bitloot.web.contract import Ok, Param, authenticated, authenticated_or_none, operation
from bitloot.web.cursor import InvalidCursor
from bitloot.web.errors import BadGateway, BadRequest, NotFound, UnprocessableEntity
from bitloot.web.ids import NO_ORDER, ORDER_ID, parse_order_id
from bitloot.web.problems import BAD_JSON, INVALID, RATE_LIMITED, TOO_LARGE
from bitloot.web.ratelimit import limit_order_creation

routes = web.RouteTableDef()

MAX_IDEMPOTENCY_KEY = 200
PRODUCT_ID = re.compile(PRODUCT_ID_PATTERN)
LOCATION = {"Location": "The new order's URL."}


@routes.post("/orders")
@operation(
    "Create an order and its NOWPayments invoice",
    tag="orders",
    security="optional",
    before=(limit_order_creation,),  # per address, before any token is read
    body=CreateOrderIn,
    params=(
        Param(
            "Idempotency-Key",
            "header",
            {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
            "Makes retries safe: the caller's retry with the same key and request, within "
            "24 hours, answers with the same order (201 again), with an `accessToken` only "
            "while that order awaits payment. Keys are per caller: a signed-in user's, or "
            "for a guest the email and items; the same user reusing a key for another "
            "request gets a 422.",
        ),
        Param(
            "Accept-Language",
            "header",
            {"type": "string"},
            "Chooses the order's language when the body has no `locale`: the best of "
            f"{SUPPORTED_LOCALES} by q-value (RFC 9110); none of them, or no header: `en`.",
        ),
    ),
    # A replay answers 201 too, as Stripe replays the first answer's status: clients treat
    # 201 as "the order exists", and a retry must not look different from the first try.
    ok=Ok(
        201,
        "The order, priced on the server (or, replayed, the key's order).",
        CreatedOrderOut,
        headers=LOCATION,
    ),
    problems={
        400: BAD_JSON,
        413: TOO_LARGE,
        422: "Invalid body (an unsupported `locale` included: the problem names the "
        "supported ones), unknown or inactive products, or a key reused for another request.",
        409: "A product cannot be sold now (checked at Kinguin before any invoice): `type` "
        "`.../out-of-stock` (fewer keys than asked) or `.../price-unavailable` (Kinguin's "
        "cheapest offer costs more than we pay); `productId` names the first, `unavailable` "
        "lists each `{productId, reason}`. No order was made.",
        429: RATE_LIMITED,
        502: "NOWPayments did not create the invoice; retry with the same key.",
        503: "`.../catalog-unavailable`: Kinguin cannot be reached and no recent answer says "
        "the product is available; retry after `Retry-After` seconds. No order was made.",
    },
)
async def create_order(request: web.Request) -> web.Response:
    """Create an order priced on the server, open its NOWPayments invoice, return both."""
    res = resources(request)
    principal = authenticated_or_none(request)
    user_id = principal.subject if principal and principal.kind in ("user", "admin") else None
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (1 <= len(key) <= MAX_IDEMPOTENCY_KEY and is_storable(key)):
        raise UnprocessableEntity([{"loc": ["header", "Idempotency-Key"], "msg": "1 to 200 chars"}])
    body = await _read_order(request)
    locale = service.order_locale(body, request.headers.get("Accept-Language"))
    try:
        answer, _ = await service.create_order(
            res, body, user_id=user_id, idempotency_key=key, locale=locale
        )
    except service.OrderRejected as exc:
        raise UnprocessableEntity(exc.problems) from None
    except service.IdempotencyKeyReused:
        raise UnprocessableEntity(
            [{"loc": ["header", "Idempotency-Key"], "msg": "already used for another request"}]
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
@operation(
    "The caller's own orders, newest first",
    tag="orders",
    security="user",  # an order token opens one order; listing needs to know who the user is
    params=(
        Param(
            "cursor",
            "query",
            {"type": "string", "maxLength": 200},
            "`nextCursor` of the previous page.",
        ),
        Param(
            "limit",
            "query",
            {
                "type": "integer",
                "minimum": 1,
                "maximum": service.MAX_PAGE,
                "default": service.DEFAULT_PAGE,
            },
            "Page size.",
        ),
    ),
    ok=Ok(200, "One page of orders.", OrderPageOut),
    problems={400: "The cursor is not one this API issued.", 422: INVALID},
)
async def list_orders(request: web.Request) -> web.Response:
    """The caller's own orders, newest first: `?cursor=&limit=` (1 to 100, default 20)."""
    res = resources(request)
    principal = authenticated(request)
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
@operation(
    "An order and its statuses",
    tag="orders",
    security="bearer",
    params=(ORDER_ID,),
    ok=Ok(200, "The order.", OrderOut),
    problems={404: NO_ORDER},
)
async def get_order(request: web.Request) -> web.Response:
    """The order and its statuses, for its owner, its order token, or an admin."""
    res = resources(request)
    principal = authenticated(request)
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
