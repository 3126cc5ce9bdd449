"""What clients send to and get from the order endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, field_validator

PRODUCT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
ProductId = Annotated[str, StringConstraints(pattern=PRODUCT_ID_PATTERN)]


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


class OrderItemOut(BaseModel):
    """An order line as stored, with the price charged."""

    productId: str
    name: str
    qty: int
    unitPrice: Decimal


class CreatedOrderOut(BaseModel):
    """`POST /orders` response. A replayed Idempotency-Key answers with the same order; once
    that order has left `created`/`waiting`, with its id and status only (`invoiceUrl` and
    `accessToken` null): a key is no credential."""

    id: uuid.UUID
    status: str
    totalAmount: Decimal
    currency: str
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
