"""Kinguin simulator: changing a product's stock and price at run time, and Kinguin's
`product.update` webhook (docs/external-apis.md 1.10), under `/sim` (no API key).

    POST /sim/products/{productId} {"qty": 0}                  # every offer sold out
    POST /sim/products/{productId} {"qty": 50, "price": 8.99}  # back, cheaper
    POST /sim/products/{productId} {"text_qty": 0, "notify": false}
    POST /sim/products/{productId} {"qty": 5, "updated_at": "2020-01-01T00:00:00+00:00"}
    POST /sim/products/{productId} {"is_preorder": true, "release_date": "2027-03-01",
                                    "regional_limitations": "EUROPE",
                                    "country_limitation": ["GB", "CH"]}
    GET  /sim/products/{productId}   # offers, facts, how often GET /v2/products read it

`qty` sets every offer's stock (keeping its text/image mix, as `/stock` does), `text_qty`
every offer's text keys (at most its stock), `price` every offer's price (EUR). The facts
(`platform`, `regional_limitations`, `country_limitation`, `image_url`, `is_preorder`,
`release_date`, `raw_images`: sent as Kinguin's `images` instead of a cover built from
`image_url`) replace the product's when given, null included, unchecked: a test can make
Kinguin say something malformed (an http image, `["gb", "XYZ"]`, a date that is none). Unless
`notify` is false, a `product.update` event then goes to the configured webhook URL with
`X-Event-Name` and `X-Event-Secret`: `{kinguinId, productId, qty, textQty,
cheapestOfferId, updatedAt}` counted over the cheapest offers in stock, plus `price` when
`with_price` is true (only older docs list it). It is delivered before the answer (retried
on non-2xx like order.status events), and the answer reports it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, ValidationError

from bitloot.kinguin.models import dump_json, format_event_time, load_json
from bitloot.sim.kinguin_catalog import SimProduct
from bitloot.sim.kinguin_http import KINGUIN_SIM, KinguinSim, json_response


class ProductFacts(BaseModel):
    """What Kinguin says about the key, as the simulator will send it (unchecked)."""

    model_config = ConfigDict(extra="forbid")

    platform: str | None = "Steam"
    regional_limitations: str | None = "REGION FREE"
    country_limitation: list[JsonValue] | None = Field(default_factory=list)
    image_url: str | None = None
    is_preorder: bool = False
    release_date: str | None = None
    raw_images: JsonValue = None

    def apply_to(self, product: SimProduct, *, every: bool) -> None:
        """Set the product's facts: every one, or (`every=False`) only those given."""
        for name in ProductFacts.model_fields:
            if every or name in self.model_fields_set:
                setattr(product, name, getattr(self, name))


class ProductChange(ProductFacts):
    """New stock and price of every offer and new facts (absent: unchanged), and the
    webhook to send."""

    qty: int | None = Field(default=None, ge=0)
    text_qty: int | None = Field(default=None, ge=0)
    price: Decimal | None = Field(default=None, gt=0)
    notify: bool = True
    with_price: bool = False
    updated_at: AwareDatetime | None = None


def add_product_routes(app: web.Application) -> None:
    """Register the routes (named `sim.*`, which the API middleware skips)."""
    app.router.add_post("/sim/products/{productId}", change_product, name="sim.change_product")
    app.router.add_get("/sim/products/{productId}", show_product, name="sim.show_product")


def update_event(product: SimProduct, updated_at: datetime, *, with_price: bool) -> dict[str, Any]:
    """The `product.update` body for the product as it is now."""
    in_stock = product.offers_in_stock()
    cheapest_price = min((o.price for o in in_stock), default=None)
    cheapest = [o for o in in_stock if o.price == cheapest_price]
    event: dict[str, Any] = {
        "kinguinId": product.kinguin_id,
        "productId": product.product_id,
        "qty": sum(o.qty for o in cheapest),
        "textQty": sum(o.text_qty for o in cheapest),
        "cheapestOfferId": [o.offer_id for o in cheapest],
        "updatedAt": format_event_time(updated_at),
    }
    if with_price and cheapest_price is not None:
        event["price"] = cheapest_price
    return event


async def change_product(request: web.Request) -> web.Response:
    """Change the product's offers, then send (and report) its product.update webhook."""
    sim = request.app[KINGUIN_SIM]
    product_id = request.match_info["productId"]
    product = sim.state.products.get(product_id)
    if product is None:
        raise web.HTTPNotFound(text="no such product")
    try:
        raw = await request.read()
        change = ProductChange.model_validate(load_json(raw) if raw.strip() else {})
    except (ValueError, ValidationError) as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    if change.qty is not None:
        sim.state.set_stock(product_id, change.qty)
    for offer in product.offers:
        if change.text_qty is not None:
            offer.text_qty = min(change.text_qty, offer.qty)
        if change.price is not None:
            offer.price = change.price
    change.apply_to(product, every=False)
    answer: dict[str, Any] = {"product": _describe(product), "webhook": None}
    if change.notify:
        event = update_event(
            product, change.updated_at or datetime.now(UTC), with_price=change.with_price
        )
        answer["webhook"] = {"event": event, **await _deliver(sim, event)}
    return json_response(answer)


async def show_product(request: web.Request) -> web.Response:
    """The product's offers and how many times the API read it."""
    product = request.app[KINGUIN_SIM].state.products.get(request.match_info["productId"])
    if product is None:
        raise web.HTTPNotFound(text="no such product")
    return json_response(_describe(product))


def _describe(product: SimProduct) -> dict[str, Any]:
    return {
        "productId": product.product_id,
        "kinguinId": product.kinguin_id,
        "reads": product.reads,
        "platform": product.platform,
        "regionalLimitations": product.regional_limitations,
        "countryLimitation": product.country_limitation,
        "imageUrl": product.image_url,
        "isPreorder": product.is_preorder,
        "releaseDate": product.release_date,
        "offers": [
            {"offerId": o.offer_id, "price": o.price, "qty": o.qty, "textQty": o.text_qty}
            for o in product.offers
        ],
    }


async def _deliver(sim: KinguinSim, event: dict[str, Any]) -> dict[str, Any]:
    target = sim.webhooks.target
    if target.url is None:
        return {"outcome": "no_url", "attempts": 0, "httpStatus": None}
    headers = {
        "Content-Type": "application/json",
        "X-Event-Name": "product.update",
        "X-Event-Secret": target.secret,
    }
    status: int | None = None
    attempts = 0
    async with aiohttp.ClientSession(timeout=sim.webhooks.timeout) as session:
        for delay in (*sim.webhooks.retry_delays, None):
            attempts += 1
            try:
                async with session.post(target.url, data=dump_json(event), headers=headers) as r:
                    await r.read()
                    status = r.status
            except (aiohttp.ClientError, TimeoutError):
                status = None
            if (status is not None and 200 <= status < 300) or delay is None:
                break
            await asyncio.sleep(delay)
    delivered = status is not None and 200 <= status < 300
    return {
        "outcome": "delivered" if delivered else "gave_up",
        "attempts": attempts,
        "httpStatus": status,
    }
