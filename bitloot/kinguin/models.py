"""Pydantic models of the Kinguin eCommerce (ESA) API, field for field.

See docs/external-apis.md, Part 1. Every model ignores unknown fields (Kinguin adds fields
without notice) and hides its input in validation errors, so a serial that arrives in a
malformed key object can never end up in an exception message or a log line.

Money is `Decimal` throughout: responses are parsed with `load_json` (floats read from the
text, never through binary float) and requests are written with `dump_json` (a `Decimal`
becomes a JSON number exactly as written).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from bitloot.text import Storable, StorableText

OrderStatus = Literal["processing", "completed", "canceled", "refunded"]
KeyStatus = Literal["PENDING", "PROCESSING", "DELIVERED", "RETURNED", "REFUNDED", "CANCELED"]
KeyType = Literal["text/plain", "image/jpeg", "image/png", "image/gif"]

MAX_PRODUCTS_PER_ORDER = 10
MAX_QTY_PER_PRODUCT = 9


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before the first UTC datetime
        raise ValueError("the time is out of range") from None


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


def load_json(text: str | bytes) -> Any:
    """Parse JSON keeping every non-integer number as an exact `Decimal`."""
    return json.loads(text, parse_float=Decimal)


def dump_json(value: Any) -> str:
    """Serialise to compact JSON, writing `Decimal` as a JSON number (not a string)."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("cannot encode a non-finite Decimal as JSON")
        return format(value, "f")
    if isinstance(value, dict):
        items = (f"{json.dumps(str(k))}:{dump_json(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dump_json(v) for v in value) + "]"
    if isinstance(value, datetime):
        return json.dumps(value.isoformat())
    return json.dumps(value)


class KinguinModel(BaseModel):
    """Base: camelCase on the wire, snake_case in Python, unknown fields ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="ignore",
        hide_input_in_errors=True,
        frozen=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict (aliases, no `None` fields, `Decimal` kept for `dump_json`)."""
        return self.model_dump(mode="python", by_alias=True, exclude_none=True)


# --- requests -------------------------------------------------------------------------


class OrderProductRequest(KinguinModel):
    """One line of `POST /v2/order`: `price` is the most we accept to pay per unit (EUR)."""

    product_id: str = Field(min_length=1)
    qty: int = Field(ge=1, le=MAX_QTY_PER_PRODUCT)
    price: Decimal = Field(gt=0, allow_inf_nan=False)
    key_type: Literal["text"] | None = None
    offer_id: str | None = None


class PlaceOrderRequest(KinguinModel):
    """Body of `POST /v2/order`."""

    products: list[OrderProductRequest] = Field(min_length=1, max_length=MAX_PRODUCTS_PER_ORDER)
    order_external_id: str = Field(min_length=1, max_length=255)

    @model_validator(mode="after")
    def _unique_ids(self) -> PlaceOrderRequest:
        # Kinguin answers 400 ConstraintViolation on a duplicate; failing here is cheaper.
        product_ids = [p.product_id for p in self.products]
        if len(set(product_ids)) != len(product_ids):
            raise ValueError("each productId may appear only once")
        offer_ids = [p.offer_id for p in self.products if p.offer_id is not None]
        if len(set(offer_ids)) != len(offer_ids):
            raise ValueError("each offerId may appear only once")
        return self


# --- orders ---------------------------------------------------------------------------


class OrderKey(KinguinModel):
    """A key's id and status inside `products[].keys[]` (no serial there)."""

    id: str
    status: KeyStatus


class ReturnedKey(KinguinModel):
    """One key in the answer of `POST /v2/order/{orderId}/keys/return`: its id and its
    status afterwards (`RETURNED` when it went back)."""

    id: str
    status: KeyStatus


class OrderProduct(KinguinModel):
    """One line of an Order."""

    product_id: str
    qty: int
    kinguin_id: int | None = None
    offer_id: str | None = None
    name: str | None = None
    price: Decimal | None = None
    total_price: Decimal | None = None
    request_price: Decimal | None = None
    is_preorder: bool | None = None
    release_date: str | None = None
    key_type: str | None = None
    keys: list[OrderKey] = Field(default_factory=list)


class Order(KinguinModel):
    """The Order object returned by place order, get order and search."""

    order_id: str
    status: OrderStatus
    created_at: UtcDatetime
    total_price: Decimal
    total_qty: int
    order_external_id: str | None = None
    kinguin_order_id: int | None = None
    request_total_price: Decimal | None = None
    payment_price: Decimal | None = None
    user_email: str | None = None
    store_id: int | None = None
    is_preorder: bool | None = None
    preorder_release_date: str | None = None
    products: list[OrderProduct] = Field(default_factory=list)

    @property
    def key_count(self) -> int:
        """How many keys the order should deliver in all."""
        return sum(p.qty for p in self.products)


class OrderSearchResult(KinguinModel):
    """`GET /v1/order`: `{results, item_count}` (snake_case on the wire, unlike the rest)."""

    results: list[Order]
    item_count: int = Field(alias="item_count")


# --- keys -----------------------------------------------------------------------------


class Key(KinguinModel):
    """A delivered key. `serial` is secret: it never appears in repr, str or errors."""

    id: str
    serial: SecretStr
    type: KeyType
    name: str | None = None
    kinguin_id: int | None = None
    offer_id: str | None = None
    product_id: str | None = None

    @field_validator("serial")
    @classmethod
    def _non_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("empty serial")
        return value

    @model_validator(mode="after")
    def _image_is_base64(self) -> Key:
        # Fail at the boundary rather than when the key is about to be encrypted.
        if self.is_image:
            self.plaintext()
        return self

    @property
    def is_image(self) -> bool:
        """True for `image/*` keys, whose serial is base64 image bytes."""
        return self.type != "text/plain"

    def plaintext(self) -> bytes:
        """The key as delivered: UTF-8 text, or the decoded image bytes for image keys."""
        secret = self.serial.get_secret_value()
        if not self.is_image:
            return secret.encode("utf-8")
        try:
            return base64.b64decode("".join(secret.split()), validate=True)
        except (binascii.Error, ValueError):
            # Deliberately without the cause: its message could quote the serial.
            raise ValueError("image key serial is not valid base64") from None


# --- products and balance -------------------------------------------------------------


class WholesaleTier(KinguinModel):
    """A wholesale price level (1: 10+, 2: 50+, 3: 100+, 4: 500+ units)."""

    level: int
    price: Decimal


class Wholesale(KinguinModel):
    """An offer's wholesale settings."""

    enabled: bool = False
    tiers: list[WholesaleTier] = Field(default_factory=list)


class Offer(KinguinModel):
    """One merchant offer for a product (prices in EUR)."""

    offer_id: str
    price: Decimal
    qty: int
    name: str | None = None
    available_qty: int | None = None
    text_qty: int | None = None
    available_text_qty: int | None = None
    merchant_name: str | None = None
    is_preorder: bool | None = None
    release_date: str | None = None
    wholesale: Wholesale | None = None


def _text_or_none(value: Any) -> Any:
    # A fact shown to customers never fails the product it came with: its stock and price
    # still matter when Kinguin sends a number, an object or null where text belongs.
    return value if isinstance(value, str) else None


def _flag_or_none(value: Any) -> Any:
    return value if isinstance(value, bool) else None


def _country_codes(value: Any) -> list[str]:
    """`countryLimitation` as two-letter upper-case codes, in order, each once; null, a
    non-list and anything that is not two letters are dropped."""
    if not isinstance(value, list):
        return []
    codes: list[str] = []
    for item in value:
        code = item.strip().upper() if isinstance(item, str) else ""
        if len(code) == 2 and code.isascii() and code.isalpha() and code not in codes:
            codes.append(code)
    return codes


def _images(value: Any) -> Any:
    return value if isinstance(value, dict) else None


# A display fact: any other shape is read as "not said" (None).
_FactText = Annotated[str | None, BeforeValidator(_text_or_none)]


class Product(KinguinModel):
    """The parts of the Product object a reseller needs; `price` is the cheapest offer.

    Besides stock and price it carries what the customer is told about the key (the
    platform, `regionalLimitations`, the countries of `countryLimitation` where the key
    will not activate, the cover image, the pre-order facts). Those are read tolerantly:
    a malformed one is dropped, never the product.
    """

    kinguin_id: int
    product_id: str
    name: str
    price: Decimal
    qty: int
    text_qty: int | None = None
    total_qty: int | None = None
    original_name: str | None = None
    platform: _FactText = None
    region_id: int | None = None
    regional_limitations: _FactText = None
    country_limitation: Annotated[list[str], BeforeValidator(_country_codes)] = Field(
        default_factory=list
    )
    cheapest_offer_id: list[str] = Field(default_factory=list)
    offers_count: int | None = None
    is_preorder: Annotated[bool | None, BeforeValidator(_flag_or_none)] = None
    release_date: _FactText = None
    updated_at: str | None = None
    offers: list[Offer] = Field(default_factory=list)
    images: Annotated[dict[str, Any] | None, BeforeValidator(_images)] = None
    # The older Product object's cover fields (docs v1), used when `images` has no cover.
    cover_image_original: _FactText = None
    cover_image: _FactText = None

    @property
    def cover_url(self) -> str | None:
        """The cover image's URL as Kinguin gives it (`images.cover.url`, else its
        `thumbnail`, else the older `coverImageOriginal` / `coverImage`); not checked."""
        cover = (self.images or {}).get("cover")
        if isinstance(cover, dict):
            for name in ("url", "thumbnail"):
                if isinstance(cover.get(name), str) and cover[name]:
                    return str(cover[name])
        return self.cover_image_original or self.cover_image or None


class Balance(KinguinModel):
    """`GET /v1/balance`."""

    balance: Decimal


# --- errors and webhooks --------------------------------------------------------------


class ErrorBody(KinguinModel):
    """A non-2xx body. Older docs say `title`, real responses say `type`: both parse."""

    kind: str | None = None
    status: int | None = None
    detail: str = ""
    title: str | None = None
    type: str | None = None
    path: str | None = None
    method: str | None = None
    trace: str | None = None
    timestamp: str | None = None
    property_path: str | None = None


# A webhook's ids are stored and indexed (webhook_events, kinguin_orders): text PostgreSQL
# can hold, and short (Kinguin order ids are; an index refuses text much over 2 kB).
MAX_EVENT_ID_CHARS = 200
_EventId = Storable[Annotated[str, StringConstraints(max_length=MAX_EVENT_ID_CHARS)]]


class OrderStatusEvent(KinguinModel):
    """The `order.status` webhook body; compare `updated_at` to drop stale events."""

    order_id: _EventId
    status: OrderStatus
    updated_at: UtcDatetime
    order_external_id: StorableText | None = None


def format_event_time(value: datetime) -> str:
    """Format a time as Kinguin webhooks do: `Y-m-d\\TH:i:s.vP` (milliseconds, +00:00)."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+00:00"
