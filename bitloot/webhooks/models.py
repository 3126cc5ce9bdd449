"""What admins send to and get from `/admin/webhook-endpoints`.

A signing secret appears in exactly two answers, once each: `CreatedEndpointOut` (the
registration) and `RotatedSecretOut` (a rotation). Nothing else has a field for one.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from bitloot.text import Storable

# The form (https, public address, known event names) is checked by `endpoints`, which
# says exactly what is wrong; these only bound the size and refuse what PostgreSQL cannot
# store.
Url = Storable[
    Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
]
EventName = Storable[
    Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
]
Description = Storable[Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]]
Reason = Storable[
    Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
]


class EndpointIn(BaseModel):
    """Body of `POST /admin/webhook-endpoints`."""

    model_config = ConfigDict(extra="forbid")

    url: Url = Field(
        description="Where events are POSTed: https, a host that is and resolves to public "
        "addresses only (unless BITLOOT_WEBHOOK_ALLOW_PRIVATE_URLS)."
    )
    events: list[EventName] | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        description="The event types it receives (order.paid, ...); absent or null: every type.",
    )
    description: Description | None = Field(default=None, description="What to call it.")


class DisableIn(BaseModel):
    """Body of `POST /admin/webhook-endpoints/{id}/disable`."""

    model_config = ConfigDict(extra="forbid")

    reason: Reason = Field(description="Why (kept on the endpoint and in the audit log).")


class SecretAgeOut(BaseModel):
    """A secret that signs deliveries now; never the secret itself."""

    createdAt: AwareDatetime
    expiresAt: AwareDatetime | None = Field(
        description="null: the current secret; else a rotated one, signing until then."
    )


class EndpointOut(BaseModel):
    """A registered endpoint."""

    id: uuid.UUID
    url: str
    events: list[str] | None = Field(description="The event types it receives; null: every type.")
    description: str | None
    enabled: bool
    disabledAt: AwareDatetime | None
    disabledReason: str | None = Field(
        description="Why it is disabled: an admin's reason, or `failing ...` when BitLoot "
        "disabled it after its deliveries failed for days."
    )
    createdBy: str = Field(description="Who registered it: the admin's sub, or `cli:<user>`.")
    createdAt: AwareDatetime
    updatedAt: AwareDatetime
    secrets: list[SecretAgeOut] = Field(
        description="The secrets that sign its deliveries now, newest (current) first."
    )


class CreatedEndpointOut(EndpointOut):
    """A new endpoint, with its signing secret: shown in this answer only."""

    secret: str = Field(
        description="The signing secret, `whsec_` and base64 (Standard Webhooks). Shown "
        "only now: BitLoot keeps it wrapped by the master key and never shows it again."
    )


class EndpointListOut(BaseModel):
    """`GET /admin/webhook-endpoints`: every registered (not removed) endpoint, oldest first."""

    items: list[EndpointOut]


class RotatedSecretOut(BaseModel):
    """A new signing secret: shown in this answer only."""

    endpointId: uuid.UUID
    secret: str = Field(
        description="The new signing secret (`whsec_...`); it signs from now on. Shown only now."
    )
    previousSecretExpiresAt: AwareDatetime | None = Field(
        description="Until when the previous secret still signs too (both signatures are "
        "sent), so receivers can switch without losing an event (BITLOOT_WEBHOOK_SECRET_OVERLAP)."
    )


class RemovedEndpointOut(BaseModel):
    """`DELETE /admin/webhook-endpoints/{id}`: removed; it receives nothing from now on."""

    id: uuid.UUID
    removedAt: AwareDatetime
    failedDeliveries: int = Field(
        description="Deliveries to it that were still pending: now failed, 'endpoint removed'."
    )


MessageId = Annotated[str, StringConstraints(pattern=r"^msg_[0-9a-f]{32}$")]


class RedeliverIn(BaseModel):
    """Body of `POST /admin/webhook-endpoints/{id}/redeliver`: one event, or every event
    the endpoint failed since a time."""

    model_config = ConfigDict(extra="forbid")

    messageId: MessageId | None = Field(
        default=None,
        description="The event's `webhook-id` (msg_...): sent again whatever its state.",
    )
    since: AwareDatetime | None = Field(
        default=None,
        description="Every failed delivery to the endpoint of an event that happened at or "
        "after this time (with a UTC offset) is sent again.",
    )
    reason: Reason | None = Field(default=None, description="Why (kept in the audit log).")

    @model_validator(mode="after")
    def _one_of(self) -> RedeliverIn:
        if (self.messageId is None) == (self.since is None):
            raise ValueError("give exactly one of messageId and since")
        return self


class RedeliveredOut(BaseModel):
    """The deliveries put back to pending, due now, their jobs queued."""

    endpointId: uuid.UUID
    redelivered: int = Field(description="How many deliveries will be attempted again.")
