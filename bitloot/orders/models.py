"""What clients send to and get from the order endpoints."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
)

from bitloot.i18n import LOCALES, supported

PRODUCT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
ProductId = Annotated[str, StringConstraints(pattern=PRODUCT_ID_PATTERN)]
# A BCP 47 language tag as far as we read it: a language, then subtags we ignore.
LANGUAGE_TAG_PATTERN = r"^[A-Za-z]{1,8}([-_][A-Za-z0-9]{1,8})*$"
SUPPORTED_LOCALES = ", ".join(LOCALES)


def _supported_locale(tag: str) -> str:
    locale = supported(tag)
    if locale is None:
        raise ValueError(f"unsupported language; supported: {SUPPORTED_LOCALES}")
    return locale


# An explicit language: reduced to one we speak (`de-AT` -> `de`), refused otherwise.
LocaleTag = Annotated[
    str,
    StringConstraints(max_length=35, pattern=LANGUAGE_TAG_PATTERN),
    AfterValidator(_supported_locale),
]


class OrderItemIn(BaseModel):
    """One line of an order: a catalog product and how many keys of it."""

    model_config = ConfigDict(extra="forbid")

    productId: ProductId
    qty: int = Field(ge=1, le=9)


class CreateOrderIn(BaseModel):
    """`POST /orders` body. The client never sets an amount: prices come from `products`."""

    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    items: list[OrderItemIn] = Field(min_length=1, max_length=10)
    locale: LocaleTag | None = Field(
        default=None,
        description=f"The customer's language for every email and the key page: a language "
        f"tag (`de`, `es-MX`), reduced to its language, which must be one we speak "
        f"({SUPPORTED_LOCALES}; another is a 422). Absent or null: the best of "
        f"`Accept-Language`, else `en`.",
        examples=["de"],
    )


class OrderItemOut(BaseModel):
    """An order line as the customer was shown it when ordering (copied from the catalog at
    `POST /orders`, never changed after), with the price charged."""

    productId: str
    name: str
    qty: int
    unitPrice: Decimal
    platform: str | None = Field(
        description="Where the key is activated, as Kinguin named it (`Steam`, `GOG COM`, "
        "...); null: not known."
    )
    regionalLimitations: str | None = Field(
        description="Where the key works, as Kinguin said (`REGION FREE`, `EUROPE`, ...); "
        "null: not known."
    )
    excludedCountries: list[str] = Field(
        description="ISO 3166-1 alpha-2 codes of the countries where the key will not "
        "activate; empty: none named."
    )
    imageUrl: str | None = Field(description="The https URL of the cover image; null: none.")
    isPreorder: bool = Field(description="A pre-order: the key comes on `releaseDate`.")
    releaseDate: date | None = Field(description="The release date; null: unknown.")


class CreatedOrderOut(BaseModel):
    """`POST /orders` response. A replayed Idempotency-Key answers with the same order; once
    that order has left `created`/`waiting`, with its id and status only (`invoiceUrl` and
    `accessToken` null): a key is no credential."""

    id: uuid.UUID
    status: str
    totalAmount: Decimal
    currency: str
    locale: str = Field(
        description="The order's language (`en`, `de`, `es`), chosen from `locale` or "
        "`Accept-Language`; a replay answers with the first request's."
    )
    invoiceUrl: str | None
    accessToken: str | None = Field(
        description="An order access token for this order (opaque, `blot_...`; send it as "
        "`Authorization: Bearer`), valid for `BITLOOT_ORDER_TOKEN_TTL`. Null when a replayed "
        "Idempotency-Key names an order that no longer awaits payment."
    )


class OrderOut(BaseModel):
    """`GET /orders/{id}` response: the order and its statuses."""

    id: uuid.UUID
    email: str
    locale: str = Field(
        description="The customer's language (`en`, `de`, `es`): of every email and the key "
        "page link."
    )
    status: str
    fulfillmentStatus: str
    statusReason: str | None
    totalAmount: Decimal
    currency: str
    invoiceUrl: str | None
    items: list[OrderItemOut]
    paidAt: datetime | None
    fulfilledAt: datetime | None
    createdAt: datetime
    updatedAt: datetime


class OrderPageOut(BaseModel):
    """`GET /orders` response: one page, and the cursor of the next (None on the last)."""

    items: list[OrderOut]
    nextCursor: str | None


Money = Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=2)]


class ProductInput(BaseModel):
    """A catalog row as an operator gives it (`bitloot products add`)."""

    model_config = ConfigDict(frozen=True)

    product_id: Annotated[str, StringConstraints(pattern=PRODUCT_ID_PATTERN)]
    name: Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
    price: Money
    currency: Annotated[str, StringConstraints(to_lower=True, pattern=r"^[a-z]{3}$")]
    max_cost: Money
    text_only: bool = True
    active: bool = True

    @field_validator("currency", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


class Product(BaseModel):
    """A catalog row as stored."""

    product_id: str
    name: str
    price: Decimal
    currency: str
    max_cost: Decimal
    text_only: bool
    active: bool
