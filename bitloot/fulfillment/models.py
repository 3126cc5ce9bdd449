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


class FulfillmentStatusOut(BaseModel):
    """`GET /fulfillment/{orderId}/status`: never a key, a link or a data key."""

    orderId: uuid.UUID
    orderStatus: str
    fulfillmentStatus: str
    keys: list[KeyStatusOut]
    updatedAt: datetime


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
