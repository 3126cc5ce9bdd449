"""Kinguin eCommerce API simulator, an aiohttp sub-application (docs/external-apis.md 1.11).

Mount it with `app.add_subapp("/kinguin", create_kinguin_sim(...))`; the client's base
URL is then `http://host:port/kinguin`, standing in for `https://.../esa/api`. The fault
and inspection API lives under `/kinguin/sim/...` and needs no API key (see
`bitloot.sim.kinguin_control`).

Choices where the real API is silent (all **inferred**): ProductUnavailable and
InsufficientBalance answer 422; an unknown order 404 OrderNotFound; an unknown or
sold-out product 404 ProductUnavailable; 429 carries kind `TooManyRequests`. A reused
`orderExternalId` (UNCONFIRMED upstream) answers 400 ConstraintViolation with
`propertyPath: orderExternalId` by default: the strict choice, since a client that
recovers by searching `orderExternalId` works against it and against an API that returns
the existing order (`duplicate_external_id="return_existing"`), but not the reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal

import structlog
from aiohttp import web

from bitloot.kinguin.models import load_json
from bitloot.sim.kinguin_control import add_control_routes
from bitloot.sim.kinguin_faults import FaultBook, HttpFault, WebhookSender, WebhookTarget
from bitloot.sim.kinguin_http import (
    KINGUIN_SIM,
    KinguinSim,
    error_response,
    json_response,
    render_key,
    render_order,
    render_product,
)
from bitloot.sim.kinguin_products import add_product_routes
from bitloot.sim.kinguin_rules import SimRejection, constraint
from bitloot.sim.kinguin_state import (
    DeliveryPlan,
    DuplicateMode,
    KinguinSimState,
    SimOrder,
    StatusEvent,
)

__all__ = ["KINGUIN_SIM", "DeliveryPlan", "KinguinSim", "create_kinguin_sim"]

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_kinguin_sim(
    *,
    api_key: str,
    webhook_url: str | None,
    webhook_secret: str,
    seed: int | None = None,
    balance: Decimal = Decimal("1000.00"),
    delivery: DeliveryPlan | None = None,
    duplicate_external_id: DuplicateMode = "constraint_violation",
    notify_processing: bool = False,
    webhook_retry_delays: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.0),
    tick: float = 0.05,
) -> web.Application:
    """Build the Kinguin simulator sub-app.

    `seed` makes ids, key types and serials reproducible; `delivery` sets how fast keys
    arrive (default: spread over 1 s); `notify_processing` also sends an `order.status`
    webhook for `processing` at placement; `tick` is how often time advances.
    """
    if not api_key:
        raise ValueError("the simulator needs an api_key to check")
    app = web.Application(middlewares=[_api_middleware])
    state = KinguinSimState(
        seed=seed,
        balance=balance,
        delivery=delivery,
        duplicate_external_id=duplicate_external_id,
        notify_processing=notify_processing,
    )
    faults = FaultBook()
    sender = WebhookSender(
        WebhookTarget(webhook_url, webhook_secret), faults, retry_delays=webhook_retry_delays
    )
    app[KINGUIN_SIM] = KinguinSim(state, faults, sender, api_key, tick)
    router = app.router
    router.add_post("/v2/order", place_order, name="place_order")
    router.add_get("/v1/order", search_orders, name="search_orders")
    router.add_get("/v1/order/{orderId}", get_order, name="get_order")
    router.add_get("/v2/order/{orderId}/keys", get_keys, name="get_keys")
    router.add_post("/v2/order/{orderId}/keys/return", return_keys, name="return_keys")
    router.add_get("/v2/products/{productId}", get_product, name="get_product")
    router.add_get("/v1/products/{kinguinId}", get_product_v1, name="get_product_v1")
    router.add_get("/v1/balance", get_balance, name="get_balance")
    add_control_routes(app)
    add_product_routes(app)
    app.cleanup_ctx.append(_background)
    return app


async def _background(app: web.Application) -> AsyncIterator[None]:
    sim = app[KINGUIN_SIM]
    await sim.webhooks.start()
    ticker = asyncio.get_running_loop().create_task(_tick(sim))
    yield
    ticker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await ticker
    await sim.webhooks.stop()


async def _tick(sim: KinguinSim) -> None:
    # Webhooks must fire even when nobody polls, as Kinguin's do.
    while True:
        await asyncio.sleep(sim.tick)
        try:
            sim.advance()
        except Exception:
            log.exception("kinguin_sim.tick_failed")


@web.middleware
async def _api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """API key check, injected faults, time advance and Kinguin-shaped errors."""
    name = request.match_info.route.name or "unknown"
    if name.startswith("sim."):
        return await handler(request)
    sim = request.app[KINGUIN_SIM]
    given = request.headers.get("X-Api-Key", "").encode()
    if not hmac.compare_digest(given, sim.api_key.encode()):
        return error_response(request, 401, "Authorization", "Invalid authentication data.")
    fired = sim.faults.take(name)
    failure = await _apply_faults(request, [f for f in fired if f.when == "before"])
    if failure is not None:
        return failure
    sim.advance()
    try:
        response = await handler(request)
    except SimRejection as exc:
        extra = {}
        if exc.property_path is not None:
            extra = {"propertyPath": exc.property_path, "invalidValue": exc.invalid_value}
        response = error_response(request, exc.status, exc.kind, exc.detail, extra=extra)
    except web.HTTPException as exc:
        response = error_response(request, exc.status, "Http", exc.reason)
    # An "after" fault hides a response whose effect (a placed order) already happened.
    failure = await _apply_faults(request, [f for f in fired if f.when == "after"])
    return failure or response


async def _apply_faults(request: web.Request, faults: list[HttpFault]) -> web.Response | None:
    delay = sum(f.seconds for f in faults)
    if delay > 0:
        await asyncio.sleep(delay)
    for fault in faults:
        if fault.status is None:
            continue
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        if fault.kind is not None:
            detail = fault.detail or "Injected failure."
            return error_response(request, fault.status, fault.kind, detail, headers=headers)
        if fault.status == 429:
            return error_response(
                request, 429, "TooManyRequests", "Too many requests.", headers=headers
            )
        # Shaped like the 500 of issue #55: `type` but no `title`.
        return error_response(
            request,
            fault.status,
            "Error" if fault.status >= 500 else "Http",
            fault.detail or "Unexpected error.",
            with_title=False,
            headers=headers,
        )
    return None


async def place_order(request: web.Request) -> web.Response:
    """`POST /v2/order`: 201 with the Order in `processing`."""
    sim = request.app[KINGUIN_SIM]
    try:
        body = load_json(await request.read())
    except ValueError:
        raise constraint("The body is not valid JSON.", "") from None
    order, created = sim.state.place_order(body)
    if created:
        log.info(
            "kinguin_sim.order_placed",
            order_id=order.order_id,
            order_external_id=order.external_id,
            keys=len(order.keys),
            total=str(order.total_price),
            fate=order.fate,
        )
        if sim.state.notify_processing:
            event = StatusEvent(order.order_id, order.external_id, "processing", order.updated_at)
            sim.webhooks.submit([event])
    return json_response(render_order(order), 201)


async def get_order(request: web.Request) -> web.Response:
    """`GET /v1/order/{orderId}`."""
    return json_response(render_order(_order(request)))


async def search_orders(request: web.Request) -> web.Response:
    """`GET /v1/order`: `{results, item_count}`, newest first, exact-match filters."""
    sim = request.app[KINGUIN_SIM]
    page, limit = _paging(request)
    query = request.query
    filters: dict[str, Callable[[SimOrder, str], bool]] = {
        "orderId": lambda o, v: o.order_id == v,
        "orderExternalId": lambda o, v: o.external_id == v,
        "status": lambda o, v: o.status == v,
        "productId": lambda o, v: any(line.product.product_id == v for line in o.lines),
        "kinguinId": lambda o, v: any(str(line.product.kinguin_id) == v for line in o.lines),
    }
    orders = sorted(sim.state.orders.values(), key=lambda o: -o.kinguin_order_id)
    for param, keep in filters.items():
        if param in query:
            orders = [o for o in orders if keep(o, query[param])]
    window = orders[(page - 1) * limit : page * limit]
    return json_response({"results": [render_order(o) for o in window], "item_count": len(orders)})


async def get_keys(request: web.Request) -> web.Response:
    """`GET /v2/order/{orderId}/keys`: delivered keys only, paged, a bare array."""
    sim = request.app[KINGUIN_SIM]
    page, limit = _paging(request)
    delivered = sim.state.poll_keys(_order(request))
    window = delivered[(page - 1) * limit : page * limit]
    return json_response([render_key(k) for k in window])


async def return_keys(request: web.Request) -> web.Response:
    """`POST /v2/order/{orderId}/keys/return`: 200 `[{id, status}]`, returned keys
    `RETURNED`; one request per order. "Already claimed" is not modelled: inject it with
    `POST /sim/faults/errors {"status": 400, "kind": "NoKeysToReturn", "endpoints":
    ["return_keys"]}`."""
    sim = request.app[KINGUIN_SIM]
    order = _order(request)
    keys = sim.state.return_keys(order)
    log.info("kinguin_sim.keys_returned", order_id=order.order_id,
             returned=sum(1 for k in keys if k.status == "RETURNED"))  # fmt: skip
    return json_response([{"id": k.id, "status": k.status} for k in keys])


async def get_product(request: web.Request) -> web.Response:
    """`GET /v2/products/{productId}`; 404 when unknown or sold out."""
    sim = request.app[KINGUIN_SIM]
    product = sim.state.products.get(request.match_info["productId"])
    if product is not None:
        product.reads += 1
    if product is None or not product.offers_in_stock():
        raise SimRejection(404, "ProductUnavailable", "Product not found or not available.")
    return json_response(render_product(product, datetime.now(UTC)))


async def get_product_v1(request: web.Request) -> web.Response:
    """`GET /v1/products/{kinguinId}`."""
    sim = request.app[KINGUIN_SIM]
    raw = request.match_info["kinguinId"]
    product = sim.state.product_by_kinguin_id(int(raw)) if raw.isdigit() else None
    if product is not None:
        product.reads += 1
    if product is None or not product.offers_in_stock():
        raise SimRejection(404, "ProductUnavailable", "Product not found or not available.")
    return json_response(render_product(product, datetime.now(UTC)))


async def get_balance(request: web.Request) -> web.Response:
    """`GET /v1/balance`: `{"balance": <number>}`."""
    return json_response({"balance": request.app[KINGUIN_SIM].state.balance})


def _order(request: web.Request) -> SimOrder:
    order = request.app[KINGUIN_SIM].state.orders.get(request.match_info["orderId"])
    if order is None:
        raise SimRejection(404, "OrderNotFound", "Order not found.")
    return order


def _paging(request: web.Request) -> tuple[int, int]:
    """`page` (from 1) and `limit` (default 25, at most 100) as Kinguin documents."""
    page_raw = request.query.get("page", "1")
    limit_raw = request.query.get("limit", "25")
    if not page_raw.isdigit() or int(page_raw) < 1:
        raise constraint("page should be a positive integer.", "page", page_raw)
    if not limit_raw.isdigit() or not 1 <= int(limit_raw) <= 100:
        raise constraint("limit should be between 1 and 100.", "limit", limit_raw)
    return int(page_raw), int(limit_raw)
