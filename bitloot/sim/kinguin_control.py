"""Kinguin simulator control API, under `/sim` in the sub-app (no API key).

Bodies are JSON with snake_case fields; every route answers JSON. Examples (prefix
`/kinguin` when mounted as in production):

    POST /sim/faults/errors   {"status": 429, "count": 3, "retry_after": 1}
    POST /sim/faults/errors   {"status": 500, "count": 1, "endpoints": ["place_order"],
                               "when": "after"}      # order placed, answer lost
    POST /sim/faults/errors   {"status": 422, "kind": "OrderFailed", "count": 1}
    POST /sim/faults/latency  {"seconds": 2, "count": 1, "endpoints": ["place_order"]}
    POST /sim/faults/webhooks {"drop": 1, "duplicate": 1, "reorder": 2}
    POST /sim/faults/outcomes {"outcomes": ["canceled", "refunded"]}
    DELETE /sim/faults
    POST /sim/delivery        {"delay": 3, "gradual": true, "instant_keys": 1,
                               "keys_per_poll": null}
    POST /sim/balance         {"balance": 50.00}
    POST /sim/products/{productId}/stock {"qty": 0}   # {"qty": null} restores the seed
    POST /sim/products/{productId} {"qty": 5, "price": 8.99}  # + product.update webhook
                                       # (bitloot.sim.kinguin_products)
    POST /sim/products        {"product_id": "...", "name": "...",
                               "offers": [{"price": 9.99, "qty": 100}],
                               "platform": "Steam", "regional_limitations": "EUROPE",
                               "country_limitation": ["GB"], "is_preorder": true,
                               "release_date": "2027-03-01", "image_url": "https://..."}
    GET  /sim/orders?include_keys=1    # every order placed since the last reset
    POST /sim/orders/{orderId}/complete
    POST /sim/orders/{orderId}/history {"delivered_hours_ago": 25, "preorder": false}
    POST /sim/faults/errors   {"status": 400, "kind": "NoKeysToReturn", "count": 1,
                               "endpoints": ["return_keys"],
                               "detail": "The key has been claimed."}   # already claimed
    GET  /sim/webhooks                 # every delivery attempt
    POST /sim/config          {"webhook_url": "...", "duplicate_external_id": "return_existing"}
    POST /sim/reset           {"seed": 7}
"""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bitloot.kinguin.models import load_json
from bitloot.sim.kinguin_catalog import SimOffer, SimProduct
from bitloot.sim.kinguin_faults import HttpFault, When
from bitloot.sim.kinguin_http import KINGUIN_SIM, KinguinSim, json_response, render_order
from bitloot.sim.kinguin_products import ProductFacts
from bitloot.sim.kinguin_state import DuplicateMode, Fate

ImageType = Literal["image/jpeg", "image/png"]
BodyT = TypeVar("BodyT", bound=BaseModel)


def _default_image_types() -> list[ImageType]:
    return ["image/png", "image/jpeg"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LatencyFault(_Body):
    """Delay matching calls."""

    seconds: float = Field(ge=0)
    count: int | None = 1
    endpoints: list[str] | None = None
    when: When = "before"


class ErrorFault(_Body):
    """Answer matching calls with an error status (429 or 5xx typically)."""

    status: int = Field(default=500, ge=400, le=599)
    count: int | None = 1
    retry_after: float | None = Field(default=None, ge=0)
    kind: str | None = None
    detail: str | None = None
    endpoints: list[str] | None = None
    when: When = "before"


class WebhookFaults(_Body):
    """How many of the next webhooks to drop, send twice, or hold and send reversed."""

    drop: int = Field(default=0, ge=0)
    duplicate: int = Field(default=0, ge=0)
    reorder: int = Field(default=0, ge=0)


class Outcomes(_Body):
    """How the next orders end, in order (unlisted orders complete)."""

    outcomes: list[Fate]


class DeliveryUpdate(_Body):
    """Delivery plan for orders placed from now on; absent fields stay."""

    delay: float | None = Field(default=None, ge=0)
    gradual: bool | None = None
    instant_keys: int | None = Field(default=None, ge=0)
    keys_per_poll: int | None = Field(default=None, ge=1)


class BalanceUpdate(_Body):
    """The new balance in EUR."""

    balance: Decimal = Field(ge=0)


class StockUpdate(_Body):
    """Stock for every offer (or one); `qty: null` restores the seeded stock."""

    qty: int | None = Field(default=None, ge=0)
    offer_id: str | None = None


class NewOffer(_Body):
    """An offer of a product added at run time."""

    price: Decimal = Field(gt=0)
    qty: int = Field(ge=0)
    text_qty: int | None = Field(default=None, ge=0)
    offer_id: str | None = None
    merchant_name: str = "Sim Merchant"
    image_types: list[ImageType] = Field(default_factory=_default_image_types)


class NewProduct(ProductFacts):
    """A product added (or replaced) at run time, with its facts (sent as given)."""

    product_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    kinguin_id: int | None = None
    offers: list[NewOffer] = Field(min_length=1)


class ConfigUpdate(_Body):
    """Run-time settings; absent fields stay."""

    webhook_url: str | None = None
    webhook_secret: str | None = None
    duplicate_external_id: DuplicateMode | None = None
    notify_processing: bool | None = None


class OrderHistory(_Body):
    """Rewrite an order's past: deliveries `delivered_hours_ago` earlier, a pre-order."""

    delivered_hours_ago: float | None = Field(default=None, ge=0)
    preorder: bool | None = None


class Reset(_Body):
    """`seed` absent: the seed the simulator was created with."""

    seed: int | None = None


def add_control_routes(app: web.Application) -> None:
    """Register the `/sim/...` routes (named `sim.*`, which the API middleware skips)."""
    routes: list[tuple[str, str, Any]] = [
        ("GET", "/sim/orders", list_orders),
        ("GET", "/sim/orders/{orderId}", show_order),
        ("POST", "/sim/orders/{orderId}/complete", complete_order),
        ("POST", "/sim/orders/{orderId}/history", rewrite_history),
        ("GET", "/sim/faults", show_faults),
        ("DELETE", "/sim/faults", clear_faults),
        ("POST", "/sim/faults/latency", add_latency),
        ("POST", "/sim/faults/errors", add_errors),
        ("POST", "/sim/faults/webhooks", set_webhook_faults),
        ("POST", "/sim/faults/outcomes", set_outcomes),
        ("POST", "/sim/delivery", set_delivery),
        ("POST", "/sim/balance", set_balance),
        ("POST", "/sim/products", add_product),
        ("POST", "/sim/products/{productId}/stock", set_stock),
        ("GET", "/sim/webhooks", list_webhooks),
        ("POST", "/sim/config", set_config),
        ("POST", "/sim/reset", reset),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, handler, name=f"sim.{handler.__name__}")


async def _parse(request: web.Request, model: type[BodyT]) -> BodyT:
    raw = await request.read()
    try:
        return model.model_validate(load_json(raw) if raw.strip() else {})
    except (ValueError, ValidationError) as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None


def _sim(request: web.Request) -> KinguinSim:
    return request.app[KINGUIN_SIM]


async def list_orders(request: web.Request) -> web.Response:
    """Every order since the last reset, oldest first; `include_keys=1` adds serials."""
    include = request.query.get("include_keys") in {"1", "true", "yes"}
    sim = _sim(request)
    sim.advance()
    orders = [render_order(o, include_keys=include) for o in sim.state.orders.values()]
    return json_response({"orders": orders})


async def show_order(request: web.Request) -> web.Response:
    """One order as the sim holds it (always with keys)."""
    sim = _sim(request)
    sim.advance()
    order = sim.state.orders.get(request.match_info["orderId"])
    if order is None:
        raise web.HTTPNotFound(text="no such order")
    return json_response(render_order(order, include_keys=True))


async def complete_order(request: web.Request) -> web.Response:
    """Deliver every key now and complete the order (sending its webhook)."""
    sim = _sim(request)
    sim.advance()
    order = sim.state.orders.get(request.match_info["orderId"])
    if order is None:
        raise web.HTTPNotFound(text="no such order")
    if order.status != "processing":
        raise web.HTTPConflict(text=f"order is {order.status}")
    sim.webhooks.submit([sim.state.complete_now(order)])
    return json_response(render_order(order))


async def rewrite_history(request: web.Request) -> web.Response:
    """Age an order's deliveries (the 24 h key-return rule) or make it a pre-order."""
    body = await _parse(request, OrderHistory)
    sim = _sim(request)
    order = sim.state.orders.get(request.match_info["orderId"])
    if order is None:
        raise web.HTTPNotFound(text="no such order")
    if body.delivered_hours_ago is not None:
        sim.state.backdate(order, body.delivered_hours_ago * 3600)
    if body.preorder is not None:
        order.is_preorder = body.preorder
    return json_response(render_order(order))


async def show_faults(request: web.Request) -> web.Response:
    """The armed faults and the fates waiting for the next orders."""
    sim = _sim(request)
    return json_response(sim.faults.describe() | {"outcomes": list(sim.state.next_fates)})


async def clear_faults(request: web.Request) -> web.Response:
    """Disarm every fault and forget pending fates."""
    sim = _sim(request)
    sim.faults.clear()
    sim.state.next_fates.clear()
    return json_response(sim.faults.describe())


async def add_latency(request: web.Request) -> web.Response:
    """Arm a latency rule."""
    body = await _parse(request, LatencyFault)
    _sim(request).faults.http.append(HttpFault(**body.model_dump()))
    return json_response(_sim(request).faults.describe())


async def add_errors(request: web.Request) -> web.Response:
    """Arm an error burst (`Retry-After` sent when `retry_after` is given)."""
    body = await _parse(request, ErrorFault)
    _sim(request).faults.http.append(HttpFault(**body.model_dump()))
    return json_response(_sim(request).faults.describe())


async def set_webhook_faults(request: web.Request) -> web.Response:
    """Set the drop/duplicate/reorder counters."""
    body = await _parse(request, WebhookFaults)
    faults = _sim(request).faults
    faults.drop_webhooks, faults.duplicate_webhooks = body.drop, body.duplicate
    faults.reorder_webhooks = body.reorder
    return json_response(faults.describe())


async def set_outcomes(request: web.Request) -> web.Response:
    """Queue how the next orders end."""
    body = await _parse(request, Outcomes)
    _sim(request).state.next_fates.extend(body.outcomes)
    return json_response({"outcomes": list(_sim(request).state.next_fates)})


async def set_delivery(request: web.Request) -> web.Response:
    """Change the delivery plan of future orders."""
    body = await _parse(request, DeliveryUpdate)
    plan = _sim(request).state.delivery
    for name in body.model_fields_set:
        value = getattr(body, name)
        if value is not None or name == "keys_per_poll":
            setattr(plan, name, value)
    return json_response(asdict(plan))


async def set_balance(request: web.Request) -> web.Response:
    """Set the account balance."""
    body = await _parse(request, BalanceUpdate)
    _sim(request).state.balance = body.balance
    return json_response({"balance": body.balance})


async def add_product(request: web.Request) -> web.Response:
    """Add or replace a product in the catalogue."""
    body = await _parse(request, NewProduct)
    state = _sim(request).state
    kinguin_id = body.kinguin_id or 20000 + len(state.products)
    offers = [
        SimOffer(
            offer_id=o.offer_id or state.keys.hex_id(),
            price=o.price,
            qty=o.qty,
            text_qty=o.qty if o.text_qty is None else min(o.text_qty, o.qty),
            merchant_name=o.merchant_name,
            image_types=tuple(o.image_types),
        )
        for o in body.offers
    ]
    product = SimProduct(body.product_id, kinguin_id, body.name, offers=offers)
    body.apply_to(product, every=True)
    state.add_product(product)
    return json_response({"productId": product.product_id, "kinguinId": kinguin_id}, 201)


async def set_stock(request: web.Request) -> web.Response:
    """Set a product's stock (0 makes it unavailable; null restores it)."""
    body = await _parse(request, StockUpdate)
    state = _sim(request).state
    product_id = request.match_info["productId"]
    if product_id not in state.products:
        raise web.HTTPNotFound(text="no such product")
    state.set_stock(product_id, body.qty, body.offer_id)
    offers = state.products[product_id].offers
    return json_response({"offers": [{"offerId": o.offer_id, "qty": o.qty} for o in offers]})


async def list_webhooks(request: web.Request) -> web.Response:
    """Every webhook delivery attempt (and drop) since the last reset."""
    return json_response({"deliveries": _sim(request).webhooks.log})


async def set_config(request: web.Request) -> web.Response:
    """Change the webhook target or the duplicate-orderExternalId behaviour."""
    body = await _parse(request, ConfigUpdate)
    sim = _sim(request)
    if "webhook_url" in body.model_fields_set:
        sim.webhooks.target.url = body.webhook_url
    if body.webhook_secret is not None:
        sim.webhooks.target.secret = body.webhook_secret
    if body.duplicate_external_id is not None:
        sim.state.duplicate_external_id = body.duplicate_external_id
    if body.notify_processing is not None:
        sim.state.notify_processing = body.notify_processing
    return json_response(
        {
            "webhook_url": sim.webhooks.target.url,
            "duplicate_external_id": sim.state.duplicate_external_id,
            "notify_processing": sim.state.notify_processing,
        }
    )


async def reset(request: web.Request) -> web.Response:
    """Back to the start: seeded catalogue and balance, no orders, no faults."""
    body = await _parse(request, Reset)
    sim = _sim(request)
    sim.state.reset(body.seed if body.seed is not None else sim.state.initial_seed)
    sim.faults.clear()
    sim.webhooks.reset()
    return json_response({"seed": sim.state.seed})
