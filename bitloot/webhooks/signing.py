"""What a delivery attempt sends: the event's body and its Standard Webhooks headers.

The body is `{"type", "timestamp", "data"}`, serialised the same way at every attempt (the
message's own time, its data with the keys sorted), so a receiver that stores the first
copy and dedupes later ones by `webhook-id` loses nothing. The signature covers
`{webhook-id}.{webhook-timestamp}.{body}` with HMAC-SHA256 under each secret that still
signs (the current one, and the previous one during a rotation's overlap), space-separated
`v1,<base64>` values: a receiver configured with either secret verifies the request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

USER_AGENT = "BitLoot-Webhooks/1 (+https://www.standardwebhooks.com)"
# The customer's email leaves BitLoot only when BITLOOT_WEBHOOK_INCLUDE_EMAIL is set.
EMAIL_FIELD = "email"


def event_timestamp(created_at: datetime) -> str:
    """The payload's `timestamp`: when the event happened, ISO 8601 in UTC (`...Z`)."""
    return created_at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def event_body(
    event_type: str, created_at: datetime, data: Mapping[str, Any], *, include_email: bool
) -> bytes:
    """The JSON body of one event, the same bytes at every attempt and to every endpoint
    with the same email setting."""
    shown = {k: data[k] for k in sorted(data) if include_email or k != EMAIL_FIELD}
    payload = {"type": event_type, "timestamp": event_timestamp(created_at), "data": shown}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signature(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature (Standard Webhooks: HMAC-SHA256 of `id.timestamp.body`)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(
    secrets: Iterable[bytes], msg_id: str, body: bytes, *, now: float
) -> dict[str, str]:
    """The request's headers: `webhook-id` (stable), `webhook-timestamp` (this attempt),
    `webhook-signature` (one value per secret), content type and user agent."""
    timestamp = int(now)
    signatures = " ".join(signature(s, msg_id, timestamp, body) for s in secrets)
    if not signatures:
        raise ValueError("an endpoint without a signing secret cannot be sent to")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }
