"""Kinguin simulator: the shared container, JSON responses and the wire rendering.

Bodies are written with `dump_json`, so prices go out as JSON numbers exactly as the
`Decimal`s they are, like Kinguin's floats.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from http import HTTPStatus
from typing import Any

from aiohttp import web

from bitloot.kinguin.models import dump_json
from bitloot.sim.kinguin_catalog import SimProduct
from bitloot.sim.kinguin_faults import FaultBook, WebhookSender
from bitloot.sim.kinguin_state import KinguinSimState, SimKey, SimOrder


@dataclass
class KinguinSim:
    """Everything one simulator instance holds."""

    state: KinguinSimState
    faults: FaultBook
    webhooks: WebhookSender
    api_key: str
    tick: float

    def advance(self) -> None:
        """Let time pass: deliver due keys and send the resulting webhooks."""
        self.webhooks.submit(self.state.advance())


KINGUIN_SIM = web.AppKey("kinguin_sim", KinguinSim)


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON response written with exact decimals."""
    return web.Response(text=dump_json(data), status=status, content_type="application/json")


def error_response(
    request: web.Request,
    status: int,
    kind: str,
    detail: str,
    *,
    with_title: bool = True,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An error in Kinguin's shape; `type` always, `title` too unless `with_title` is off."""
    # Kinguin uses the RFC 9110 phrase for 422 (issue #40), newer than Python 3.11's.
    reason = "Unprocessable Content" if status == 422 else HTTPStatus(status).phrase
    body: dict[str, Any] = {"kind": kind, "status": status}
    if with_title:
        body["title"] = reason
    body |= {
        "type": reason,
        "detail": detail,
        "path": request.path,
        "method": request.method,
        "trace": secrets.token_hex(5),
        "timestamp": datetime.now(UTC).replace(microsecond=0).isoformat(),
    }
    body |= extra or {}
    response = json_response(body, status)
    response.headers.update(headers or {})
    return response


def render_order(order: SimOrder, *, include_keys: bool = False) -> dict[str, Any]:
    """The Order object; `include_keys` adds each key's serial and type (sim only)."""
    products = []
    for line in order.lines:
        keys = [k for k in order.keys if k.line is line]
        products.append(
            {
                "kinguinId": line.product.kinguin_id,
                "offerId": line.offer.offer_id,
                "productId": line.product.product_id,
                "qty": line.qty,
                "name": line.product.name,
                "price": line.price,
                "totalPrice": line.price * line.qty,
                "requestPrice": line.request_price,
                "isPreorder": False,
                "releaseDate": None,
                "keyType": line.key_type,
                "keys": [_order_key(k, include_keys) for k in keys],
            }
        )
    request_total = sum((line.request_price * line.qty for line in order.lines), Decimal("0"))
    return {
        "orderId": order.order_id,
        "orderExternalId": order.external_id,
        "kinguinOrderId": order.kinguin_order_id,
        "status": order.status,
        "totalPrice": order.total_price,
        "requestTotalPrice": request_total,
        "paymentPrice": order.total_price,
        "userEmail": "reseller@bitloot.example",
        "storeId": 1,
        "createdAt": order.created_at.isoformat(),
        "totalQty": len(order.keys),
        "isPreorder": order.is_preorder,
        "preorderReleaseDate": None,
        "products": products,
    }


def _order_key(key: SimKey, include_secret: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": key.id, "status": key.status}
    if include_secret:
        entry |= {"serial": key.serial, "type": key.type}
    return entry


def render_key(key: SimKey) -> dict[str, Any]:
    """A Key object of `GET /v2/order/{id}/keys`."""
    return {
        "id": key.id,
        "serial": key.serial,
        "type": key.type,
        "name": key.line.product.name,
        "kinguinId": key.line.product.kinguin_id,
        "offerId": key.line.offer.offer_id,
        "productId": key.line.product.product_id,
    }


def render_product(product: SimProduct, updated_at: datetime) -> dict[str, Any]:
    """The Product object (`price` and `qty` from the cheapest offers in stock)."""
    in_stock = product.offers_in_stock()
    cheapest_price = min(o.price for o in in_stock)
    cheapest = [o for o in in_stock if o.price == cheapest_price]
    offers = [
        {
            "offerId": o.offer_id,
            "name": product.name,
            "price": o.price,
            "qty": o.qty,
            "availableQty": o.qty,
            "textQty": o.text_qty,
            "availableTextQty": o.text_qty,
            "merchantName": o.merchant_name,
            "isPreorder": product.is_preorder,
            "releaseDate": product.release_date,
            "wholesale": {
                "enabled": o.wholesale,
                "tiers": (
                    [{"level": 1, "price": o.price}, {"level": 2, "price": _discount(o.price)}]
                    if o.wholesale
                    else []
                ),
            },
        }
        for o in product.offers
    ]
    return {
        "kinguinId": product.kinguin_id,
        "productId": product.product_id,
        "name": product.name,
        "originalName": product.name,
        "platform": product.platform,
        "regionId": 3,
        "regionalLimitations": product.regional_limitations,
        "countryLimitation": product.country_limitation,
        "price": cheapest_price,
        "qty": sum(o.qty for o in cheapest),
        "textQty": sum(o.text_qty for o in cheapest),
        "totalQty": sum(o.qty for o in product.offers),
        "cheapestOfferId": [o.offer_id for o in cheapest],
        "offersCount": len(in_stock),
        "isPreorder": product.is_preorder,
        "releaseDate": product.release_date,
        "updatedAt": updated_at.replace(microsecond=0).isoformat(),
        "offers": offers,
        "images": _images(product),
    }


def _images(product: SimProduct) -> Any:
    """Kinguin's `images` object: the cover (its `url` and `thumbnail`), screenshots."""
    if product.raw_images is not None:
        return product.raw_images
    cover = (
        {"url": product.image_url, "thumbnail": product.image_url} if product.image_url else None
    )
    return {"cover": cover, "screenshots": []}


def _discount(price: Decimal) -> Decimal:
    return (price * Decimal("0.95")).quantize(Decimal("0.01"))
