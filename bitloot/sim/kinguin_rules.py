"""Kinguin simulator: the validation rules of `POST /v2/order` and the rejection error."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

MAX_PRODUCTS = 10
MAX_QTY = 9
MAX_WHOLESALE_QTY = 1000


class SimRejection(Exception):
    """A request Kinguin would refuse, with the error body's fields."""

    def __init__(
        self,
        status: int,
        kind: str,
        detail: str,
        *,
        property_path: str | None = None,
        invalid_value: Any = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.property_path = property_path
        self.invalid_value = invalid_value


def constraint(detail: str, path: str, value: Any = None) -> SimRejection:
    """A 400 ConstraintViolation (documented)."""
    return SimRejection(400, "ConstraintViolation", detail, property_path=path, invalid_value=value)


@dataclass
class ParsedLine:
    """A validated line of the place-order body."""

    product_id: str
    qty: int
    price: Decimal
    key_type: str | None
    offer_id: str | None


def parse_order_body(body: Any) -> tuple[list[ParsedLine], str | None]:
    """Check a `POST /v2/order` body as Kinguin does (400 ConstraintViolation)."""
    if not isinstance(body, dict):
        raise constraint("The body must be a JSON object.", "")
    products = body.get("products")
    if not isinstance(products, list) or not products:
        raise constraint("This collection should contain 1 element or more.", "products")
    if len(products) > MAX_PRODUCTS:
        raise constraint(
            "This collection should contain 10 elements or less.", "products", len(products)
        )
    lines = [_parse_line(item, i) for i, item in enumerate(products)]
    product_ids = [line.product_id for line in lines]
    if len(set(product_ids)) != len(product_ids):
        raise constraint("Each productId may appear only once.", "products")
    offer_ids = [line.offer_id for line in lines if line.offer_id is not None]
    if len(set(offer_ids)) != len(offer_ids):
        raise constraint("Each offerId may appear only once.", "products")
    external_id = body.get("orderExternalId")
    if external_id is not None and (not isinstance(external_id, str) or not external_id):
        raise constraint("orderExternalId must be a non-empty string.", "orderExternalId")
    return lines, external_id


def _parse_line(item: Any, index: int) -> ParsedLine:
    where = f"products[{index}]"
    if not isinstance(item, dict):
        raise constraint("A product must be an object.", where)
    product_id, qty, price = item.get("productId"), item.get("qty"), item.get("price")
    key_type, offer_id = item.get("keyType"), item.get("offerId")
    if not isinstance(product_id, str) or not product_id:
        raise constraint("This value should not be blank.", f"{where}.productId")
    if isinstance(qty, bool) or not isinstance(qty, int) or qty < 1:
        raise constraint("This value should be a positive integer.", f"{where}.qty", qty)
    if qty > MAX_WHOLESALE_QTY or (qty > MAX_QTY and offer_id is None):
        raise constraint("This value should be 9 or less.", f"{where}.qty", qty)
    if isinstance(price, bool) or not isinstance(price, int | Decimal) or price <= 0:
        raise constraint("This value should be a positive number.", f"{where}.price", price)
    if key_type not in (None, "text"):
        raise constraint('The only accepted keyType is "text".', f"{where}.keyType", key_type)
    if offer_id is not None and not isinstance(offer_id, str):
        raise constraint("offerId must be a string.", f"{where}.offerId")
    return ParsedLine(product_id, qty, Decimal(price), key_type, offer_id)
