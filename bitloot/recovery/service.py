"""The recovery domain: a customer who lost the delivery email, or whose link expired or was
revoked, asks for fresh links by email address (`POST /orders/recover`).

No enumeration: the HTTP answer (status, body, headers, and time: see `routes`) is the same
whether or not the address has orders, so the endpoint cannot be used to learn who bought
here; only the mailbox's owner learns anything, from the email. Every request, whatever it
found, is an append-only `recovery_requests` row (with the orders it listed, which appear
in each order's `fulfillment_timeline`).

An order is recoverable when it is fulfilled (not refunded) and still has a live key within
the retention period (`queries.sql`); an address's newest `MAX_ORDERS` are listed. When
there are any, ONE recovery email is queued in the same transaction (the delivery domain
sends it: it revokes each listed order's earlier emailed links and issues fresh ones as it
sends). Per-address and per-client rate limits are the route's (`bitloot.web.ratelimit`);
a request over the per-address limit is still recorded, as `rate_limited`, and sends
nothing.
"""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg
import structlog

from bitloot.delivery import service as delivery
from bitloot.recovery import repository
from bitloot.recovery.repository import RecordedRequest

log = structlog.get_logger(__name__)
Conn = psycopg.AsyncConnection[Any]

# One email lists at most this many orders (the newest): enough for any real customer,
# and a bound on the work a single anonymous request can cause.
MAX_ORDERS = 20


def normalised_email(email: str) -> str:
    """How an address is matched and recorded: trimmed and lower-cased."""
    return email.strip().lower()


def address_digest(email: str) -> str:
    """A stable name for an address that is not the address (rate-limit buckets, logs)."""
    return hashlib.sha256(normalised_email(email).encode("utf-8")).hexdigest()[:32]


async def request_recovery(
    conn: Conn, *, email: str, client_ip: str | None, rate_limited: bool
) -> RecordedRequest:
    """Record one recovery request and, when the address has recoverable orders (and is not
    rate-limited), queue the one email listing them; in the caller's transaction."""
    recorded = await repository.record_request(
        conn,
        email=normalised_email(email),
        client_ip=client_ip,
        rate_limited=rate_limited,
        max_orders=MAX_ORDERS,
    )
    if recorded.outcome == "sent":
        if recorded.to_address is None:
            raise RuntimeError("a recovery request with orders has no address")
        await delivery.queue_recovery_email(
            conn, request_id=recorded.request_id, to_address=recorded.to_address
        )
    return recorded
