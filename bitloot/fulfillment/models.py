"""What clients get from the customer fulfillment endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

KeyStatus = Literal["stored", "accessed", "expired", "deleted"]


class KeyStatusOut(BaseModel):
    """One delivered key's place in its life: stored, accessed, expired or deleted."""

    keyId: str
    status: KeyStatus
    productId: str | None = Field(
        description="The product the key is for (an `items[].productId`); null for a key "
        "delivered before products were recorded per key."
    )


class OrderItemOut(BaseModel):
    """One order line as the customer was shown it when ordering (the order's snapshot),
    in words in the language asked for: what it is, where it works, how to activate it.
    Never a price or a cost."""

    productId: str
    name: str
    qty: int
    platform: str = Field(
        description="As Kinguin names it (`Steam`, `Xbox Series X|S`); empty when unknown."
    )
    platformCode: str = Field(
        description="steam, epic, gog, xbox, playstation, nintendo, ea, ubisoft, battlenet, "
        "or other (generic activation steps)."
    )
    region: str = Field(description="Where the key works, in a sentence.")
    excluded: str = Field(
        description="The countries where the key will not activate, in a sentence; empty when none."
    )
    steps: list[str] = Field(description="How to activate the key, one sentence per step.")
    redeemUrl: str | None = Field(description="The platform's own redeem page, if it has one.")
    redeemLabel: str = Field(description="The text of a link to `redeemUrl`.")
    preorder: str = Field(
        description="For a pre-order, when its key comes, in a sentence; empty otherwise."
    )


class FulfillmentStatusOut(BaseModel):
    """`GET /fulfillment/{orderId}/status`: never a key, a link or a data key."""

    orderId: uuid.UUID
    orderStatus: str
    fulfillmentStatus: str
    locale: str = Field(description="The order's language (en, de, es): its emails' language.")
    items: list[OrderItemOut] = Field(
        description="What was bought, in the language of `?lang=` (else the order's)."
    )
    keys: list[KeyStatusOut]
    updatedAt: datetime


class FulfillmentStatusQuery(BaseModel):
    """`GET /fulfillment/{orderId}/status` query."""

    lang: str | None = Field(
        default=None,
        description="The language of `items` (a language tag: `de`, `es-MX`); one we do not "
        "speak, or none, gives the order's language.",
    )


class DownloadLinkQuery(BaseModel):
    """`GET /fulfillment/{orderId}/download-link` query."""

    keyId: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Only this key: 404 when the order has no such key, 410 when it was "
        "replaced (`replacedBy` names the new key) or revoked. Without it: every live key.",
    )


class KeyLinkOut(BaseModel):
    """Where one key's ciphertext is and the data key that opens it (see CONTRACT.md)."""

    keyId: str
    productId: str | None = Field(description="The product the key is for (see the status).")
    contentType: str
    # Both are capabilities: kept out of repr, so a stray log line or traceback shows neither.
    signedUrl: str = Field(repr=False)
    dataKey: str = Field(repr=False)
    algorithm: str


class DownloadLinksOut(BaseModel):
    """`GET /fulfillment/{orderId}/download-link`: every key of the order, each link valid
    until `expiresAt`."""

    orderId: uuid.UUID
    expiresAt: datetime
    keys: list[KeyLinkOut]
