"""What admins send to and get from the admin endpoints.

Money is a string (the exact decimal, trailing zeros trimmed), never a float. Nothing here
has a field for a key, a data key (wrapped or not), an object key, a signed URL or a token.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from bitloot.nowpayments.models import PaymentStatusValue
from bitloot.text import Storable

# A query string decodes `+` as a space, so `from=2025-01-01T00:00:00+00:00` sent unescaped
# arrives as `... 00:00`. That space can only have been a `+`: put it back.
_SPACED_OFFSET = re.compile(
    r"(?P<at>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (?P<offset>\d{2}:?\d{2})"
)


def _restore_plus(value: Any) -> Any:
    if isinstance(value, str) and (m := _SPACED_OFFSET.fullmatch(value.strip())):
        return f"{m['at']}+{m['offset']}"
    return value


QueryInstant = Annotated[AwareDatetime, BeforeValidator(_restore_plus)]
# Text an admin sends is stored or compared in PostgreSQL, which refuses NUL and lone
# surrogates (`%00` in a query, `\u0000` in JSON): 422, not a 500.
EmailFilter = Storable[
    Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=320)]
]
Cursor = Storable[Annotated[str, StringConstraints(min_length=1, max_length=512)]]
Reason = Storable[
    Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
]


class PaymentListQuery(BaseModel):
    """`GET /admin/payments` query: filters, a position and a page size.

    `from` is inclusive, `to` exclusive; both need a UTC offset. `email` matches the order's
    email exactly, ignoring case. `cursor` is the `nextCursor` of the previous page, valid
    with the same filters.
    """

    model_config = ConfigDict(extra="forbid")

    status: PaymentStatusValue | None = Field(
        default=None, description="Only payments in this NOWPayments status."
    )
    from_: QueryInstant | None = Field(
        default=None, alias="from", description="Created at or after (with a UTC offset)."
    )
    to: QueryInstant | None = Field(default=None, description="Created before (with a UTC offset).")
    email: EmailFilter | None = Field(
        default=None, description="The order's email, exactly, ignoring case."
    )
    cursor: Cursor | None = Field(
        default=None, description="`nextCursor` of the previous page, with the same filters."
    )
    limit: int = Field(default=50, ge=1, le=100, description="Page size.")

    @model_validator(mode="after")
    def _range_is_ordered(self) -> PaymentListQuery:
        if self.from_ is not None and self.to is not None and self.from_ >= self.to:
            raise ValueError("'from' must be earlier than 'to'")
        return self


class ReasonIn(BaseModel):
    """Body of an admin action: why it is done (kept in the audit log)."""

    model_config = ConfigDict(extra="forbid")

    reason: Reason


class PaymentOut(BaseModel):
    """One payment as the list shows it."""

    paymentId: str
    orderId: uuid.UUID
    status: str
    priceAmount: str | None
    priceCurrency: str | None
    payAmount: str | None
    payCurrency: str | None
    actuallyPaid: str | None
    createdAt: datetime
    updatedAt: datetime


class PaymentPageOut(BaseModel):
    """`GET /admin/payments`: newest first; `nextCursor` is null on the last page."""

    items: list[PaymentOut]
    nextCursor: str | None


class IpnOut(BaseModel):
    """One verified IPN stored for the payment, with what applying it did.

    `rawBody` is the body exactly as NOWPayments sent it: the signature was checked over
    it and it carries no secret (the signature travels in a header and is not stored).
    """

    eventId: int
    receivedAt: datetime
    processedAt: datetime | None
    status: str
    outcome: str | None
    needsAttention: bool
    signatureVariant: str | None
    rawBody: str


class PaymentDetailOut(PaymentOut):
    """`GET /admin/payments/{id}`: the payment, its order's state and every IPN for it."""

    invoiceId: str | None
    parentPaymentId: str | None
    actuallyPaidAtFiat: str | None
    outcomeAmount: str | None
    outcomeCurrency: str | None
    providerUpdatedAt: datetime | None
    lastIpnAt: datetime
    orderStatus: str
    customerEmail: str
    ipns: list[IpnOut]


class TimelineOrderOut(BaseModel):
    """The order's current state."""

    id: uuid.UUID
    email: str
    userId: str | None
    status: str
    statusReason: str | None
    fulfillmentStatus: str
    fulfillmentError: str | None
    totalAmount: str
    currency: str
    invoiceId: str | None
    kinguinPlacementStartedAt: datetime | None
    paidAt: datetime | None
    fulfilledAt: datetime | None
    createdAt: datetime
    updatedAt: datetime


class OrderEventOut(BaseModel):
    """One status change of either state machine, and who made it."""

    id: int
    machine: str
    fromStatus: str | None
    toStatus: str
    actor: str
    reason: str | None
    at: datetime


class KinguinOrderOut(BaseModel):
    """The Kinguin order bought for this order."""

    kinguinOrderId: str
    status: str
    statusUpdatedAt: datetime | None
    paymentPrice: str | None
    polls: int
    createdAt: datetime
    updatedAt: datetime


class DeliveredKeyOut(BaseModel):
    """One key's delivery log entry: where it stands, never what it is or where it lies."""

    keyId: str
    productId: str | None
    status: str
    contentType: str
    masterKeyId: str
    expiresAt: datetime | None
    lastAccessedAt: datetime | None
    createdAt: datetime


class KeyAccessOut(BaseModel):
    """One issue of a download link: who asked (`admin` is an override) and from where."""

    id: int
    keyId: str
    actorKind: str
    actorId: str | None
    clientIp: str | None
    userAgent: str | None
    at: datetime


class EmailOut(BaseModel):
    """One delivery email (a resend is the next generation)."""

    id: int
    kind: str
    generation: int
    toAddress: str
    status: str
    attempts: int
    lastError: str | None
    sentAt: datetime | None
    createdAt: datetime


class WebhookEventOut(BaseModel):
    """One webhook that named this order (bodies are on `GET /admin/payments/{id}`)."""

    id: int
    provider: str
    eventType: str
    externalId: str | None
    receivedAt: datetime
    processedAt: datetime | None
    outcome: str | None
    needsAttention: bool


class KinguinCallOut(BaseModel):
    """One HTTP attempt to Kinguin for this order (`kinguin_calls`): a retry is its own
    row with the next `attempt`; `outcome` is `ok`, `timeout`, `connection_error`,
    `rate_limited`, `server_error` or Kinguin's error kind."""

    id: int
    endpoint: str
    attempt: int
    outcome: str
    httpStatus: int | None
    errorCode: str | None
    latencyMs: str
    at: datetime


class AdminActionOut(BaseModel):
    """One audited admin action on this order."""

    id: int
    adminId: str
    action: str
    reason: str | None
    details: dict[str, Any]
    at: datetime


class FulfillmentTimelineOut(BaseModel):
    """`GET /admin/orders/{id}/fulfillment`: everything that happened to the order.

    Each list is oldest first. No key, data key, object key or signed URL is included.
    """

    order: TimelineOrderOut
    payments: list[PaymentOut]
    events: list[OrderEventOut]
    kinguinOrder: KinguinOrderOut | None
    keys: list[DeliveredKeyOut]
    accessEvents: list[KeyAccessOut]
    emails: list[EmailOut]
    webhookEvents: list[WebhookEventOut]
    kinguinCalls: list[KinguinCallOut]
    adminActions: list[AdminActionOut]


class RetryOut(BaseModel):
    """`POST /admin/orders/{id}/fulfillment/retry`: the fulfillment is queued again."""

    orderId: uuid.UUID
    fulfillmentStatus: str


class ResendOut(BaseModel):
    """`POST /admin/orders/{id}/delivery-email/resend`: the new email queued; the links of
    the earlier delivery emails no longer open the order."""

    orderId: uuid.UUID
    outboxId: int
    generation: int
    revokedLinks: int = Field(
        description="How many unexpired links of earlier delivery emails were revoked "
        "(they answer 401 from now on; the new email carries a fresh one)."
    )


# --- settlements: refunds, accepted short payments, what is due ---------------------------

Reference = Storable[
    Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
]


class RefundIn(BaseModel):
    """Body of `POST /admin/orders/{id}/refund`: the payout already made in NOWPayments'
    dashboard. `amount` (order currency, at most 2 decimals, a string preferably) defaults
    to what the customer paid (`amountDue` of `GET /admin/refunds-due`)."""

    model_config = ConfigDict(extra="forbid")

    reason: Reason
    reference: Reference = Field(description="The payout's reference in NOWPayments.")
    amount: Decimal | None = Field(
        default=None,
        gt=0,
        max_digits=12,
        decimal_places=2,
        allow_inf_nan=False,
        description="In the order's currency; more than 0, at most the order total.",
    )


class RefundOut(BaseModel):
    """`POST /admin/orders/{id}/refund`: the refund recorded for the order (201 when this
    call recorded it, 200 when it already was)."""

    refundId: int
    orderId: uuid.UUID
    orderStatus: str
    amount: str
    currency: str
    reference: str
    reason: str
    adminId: str
    createdAt: datetime


class AcceptanceOut(BaseModel):
    """`POST /admin/orders/{id}/accept-payment`: the acceptance, and the order now paid
    with its fulfillment queued (200 also when it already was accepted)."""

    acceptanceId: int
    orderId: uuid.UUID
    orderStatus: str
    fulfillmentStatus: str
    amountReceived: str = Field(description="What arrived, in the order's currency.")
    currency: str
    adminId: str
    reason: str
    acceptedAt: datetime


class RefundsDueQuery(BaseModel):
    """`GET /admin/refunds-due` query: a position and a page size."""

    model_config = ConfigDict(extra="forbid")

    cursor: Cursor | None = Field(default=None, description="`nextCursor` of the previous page.")
    limit: int = Field(default=50, ge=1, le=100, description="Page size.")


class DueOrderOut(BaseModel):
    """An order whose money an admin must settle (a row of the `refunds_due` view)."""

    orderId: uuid.UUID
    status: str
    fulfillmentStatus: str
    why: str
    email: str
    currency: str
    totalAmount: str
    amountDue: str = Field(
        description="What a refund gives back by default, in the order's currency: the "
        "total when a payment covered it, else what arrived (rounded down to cents)."
    )
    actuallyPaid: str | None = Field(description="What arrived in crypto (null: unknown).")
    payCurrency: str | None
    since: datetime


class RefundsDuePageOut(BaseModel):
    """`GET /admin/refunds-due`: newest first; `nextCursor` is null on the last page."""

    items: list[DueOrderOut]
    nextCursor: str | None


# --- key replacement (admin) ------------------------------------------------------------

ReplacementStatus = Literal["requested", "placed", "delivered", "failed"]


class ReplaceKeyIn(BaseModel):
    """`POST /admin/orders/{orderId}/keys/{keyId}/replace`: why the key is replaced."""

    model_config = ConfigDict(extra="forbid")

    reason: Reason = Field(description="Why, for the audit log (1 to 500 characters).")


class KeyReplacementOut(BaseModel):
    """A key replacement: where it stands, never a key, a link or a data key."""

    replacementId: int
    orderId: uuid.UUID
    keyId: str = Field(description="The faulty key.")
    number: int = Field(description="The order's replacements are numbered 1, 2, ...")
    status: ReplacementStatus = Field(
        description="requested (queued or being bought), placed (bought at Kinguin, waiting "
        "for the key), delivered (the new key is live, the faulty one revoked), failed (see "
        "`error`; the faulty key stays live)."
    )
    orderExternalId: str = Field(description="The replacement's own Kinguin orderExternalId.")
    kinguinOrderId: str | None
    newKeyId: str | None = Field(description="The replacement key, once delivered.")
    error: str | None = Field(description="Why it failed, when it did.")
    adminId: str
    reason: str
    createdAt: datetime
    updatedAt: datetime


class KeyReplacementsOut(BaseModel):
    """`GET /admin/orders/{orderId}/key-replacements`: every replacement of the order's keys."""

    items: list[KeyReplacementOut]
