"""The webhooks domain's queries (`queries.sql`): one function per statement, no rules.

Every function takes the caller's connection and never commits; `endpoints` and the
delivery modules own the rules.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

from bitloot.db.queries import QuerySet
from bitloot.webhooks.secrets import WrappedSecret

Q = QuerySet("bitloot.webhooks")
Conn = psycopg.AsyncConnection[Any]


@dataclass(frozen=True)
class EndpointRow:
    """A `webhook_endpoints` row."""

    id: uuid.UUID
    url: str
    event_types: list[str] | None
    description: str | None
    enabled: bool
    disabled_at: datetime | None
    disabled_reason: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    removed_at: datetime | None


@dataclass(frozen=True)
class SecretAge:
    """A secret that still signs, as an admin sees it: when it was made, when it expires
    (None: the current one). Never the secret."""

    id: int
    endpoint_id: uuid.UUID
    created_at: datetime
    expires_at: datetime | None


@dataclass(frozen=True)
class StoredSecret:
    """A `webhook_endpoint_secrets` row as re-wrapping needs it."""

    id: int
    endpoint_id: uuid.UUID
    wrapped: bytes
    master_key_id: str

    @property
    def secret(self) -> WrappedSecret:
        """The wrapped secret, as `secrets.unwrap` and `secrets.rewrap` take it."""
        return WrappedSecret(bytes(self.wrapped), self.master_key_id)


async def insert_endpoint(
    conn: Conn,
    *,
    url: str,
    event_types: Sequence[str] | None,
    description: str | None,
    created_by: str,
) -> uuid.UUID:
    """Insert an endpoint (enabled); its id."""
    cur = await conn.execute(
        Q["insert_endpoint"],
        {
            "url": url,
            "event_types": list(event_types) if event_types is not None else None,
            "description": description,
            "created_by": created_by,
        },
    )
    row = await cur.fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


async def insert_endpoint_secret(conn: Conn, endpoint_id: uuid.UUID, secret: WrappedSecret) -> int:
    """Store a wrapped secret as the endpoint's current one; its id."""
    cur = await conn.execute(
        Q["insert_endpoint_secret"],
        {
            "endpoint_id": endpoint_id,
            "wrapped": secret.wrapped,
            "master_key_id": secret.master_key_id,
        },
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def registered_endpoints(conn: Conn) -> list[EndpointRow]:
    """Every endpoint not removed, oldest first."""
    async with conn.cursor(row_factory=class_row(EndpointRow)) as cur:
        await cur.execute(Q["registered_endpoints"])
        return await cur.fetchall()


async def registered_endpoint(
    conn: Conn, endpoint_id: uuid.UUID, *, lock: bool = False
) -> EndpointRow | None:
    """One endpoint not removed (locked for the transaction with `lock`), or None."""
    query = Q["lock_registered_endpoint"] if lock else Q["registered_endpoint"]
    async with conn.cursor(row_factory=class_row(EndpointRow)) as cur:
        await cur.execute(query, {"endpoint_id": endpoint_id})
        return await cur.fetchone()


async def endpoint_secret_ages(
    conn: Conn, endpoint_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[SecretAge]]:
    """Per endpoint, its secrets that still sign, newest first."""
    found: dict[uuid.UUID, list[SecretAge]] = {i: [] for i in endpoint_ids}
    async with conn.cursor(row_factory=class_row(SecretAge)) as cur:
        await cur.execute(Q["endpoint_secret_ages"], {"endpoint_ids": list(endpoint_ids)})
        for age in await cur.fetchall():
            found[age.endpoint_id].append(age)
    return found


async def endpoint_signing_secrets(conn: Conn, endpoint_id: uuid.UUID) -> list[WrappedSecret]:
    """The wrapped secrets that sign the endpoint's deliveries now, newest first."""
    cur = await conn.execute(Q["endpoint_signing_secrets"], {"endpoint_id": endpoint_id})
    return [WrappedSecret(bytes(row[0]), str(row[1])) for row in await cur.fetchall()]


async def disable_endpoint(conn: Conn, endpoint_id: uuid.UUID, reason: str) -> bool:
    """Disable an enabled endpoint; False when it was not enabled (or is removed)."""
    cur = await conn.execute(Q["disable_endpoint"], {"endpoint_id": endpoint_id, "reason": reason})
    return cur.rowcount == 1


async def enable_endpoint(conn: Conn, endpoint_id: uuid.UUID) -> bool:
    """Enable a disabled endpoint; False when it was not disabled (or is removed)."""
    cur = await conn.execute(Q["enable_endpoint"], {"endpoint_id": endpoint_id})
    return cur.rowcount == 1


async def requeue_pending_deliveries(conn: Conn, endpoint_id: uuid.UUID) -> int:
    """Queue a delivery job for each order with pending deliveries to the endpoint; how many
    (endpoint, order) pairs had some."""
    cur = await conn.execute(Q["requeue_pending_deliveries"], {"endpoint_id": endpoint_id})
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def expire_current_secret(
    conn: Conn, endpoint_id: uuid.UUID, overlap_seconds: float
) -> datetime | None:
    """Let the current secret sign `overlap_seconds` more; when it stops, or None if the
    endpoint had no current secret."""
    cur = await conn.execute(
        Q["expire_current_secret"], {"endpoint_id": endpoint_id, "overlap": overlap_seconds}
    )
    row = await cur.fetchone()
    return row[1] if row else None


async def remove_endpoint(conn: Conn, endpoint_id: uuid.UUID) -> datetime | None:
    """Mark the endpoint removed; when, or None if it was already removed (or never was)."""
    cur = await conn.execute(Q["remove_endpoint"], {"endpoint_id": endpoint_id})
    row = await cur.fetchone()
    return row[0] if row else None


async def expire_all_secrets(conn: Conn, endpoint_id: uuid.UUID) -> int:
    """Stop every secret of the endpoint signing, now; how many still did."""
    cur = await conn.execute(Q["expire_all_secrets"], {"endpoint_id": endpoint_id})
    return cur.rowcount


async def fail_pending_deliveries(conn: Conn, endpoint_id: uuid.UUID, error: str) -> int:
    """Mark the endpoint's pending deliveries failed with `error`; how many."""
    cur = await conn.execute(
        Q["fail_pending_deliveries"], {"endpoint_id": endpoint_id, "error": error}
    )
    return cur.rowcount


async def lock_secrets_to_rewrap(conn: Conn, active_id: str) -> list[StoredSecret]:
    """Lock (skipping rows others hold) every secret not wrapped by `active_id`."""
    async with conn.cursor(row_factory=class_row(StoredSecret)) as cur:
        await cur.execute(Q["lock_secrets_to_rewrap"], {"active_id": active_id})
        return await cur.fetchall()


async def rewrap_secret(conn: Conn, stored: StoredSecret, new: WrappedSecret) -> bool:
    """Replace a locked secret's wrapping; False if it changed meanwhile (it cannot)."""
    cur = await conn.execute(
        Q["rewrap_secret"],
        {
            "id": stored.id,
            "old_master_key_id": stored.master_key_id,
            "wrapped": new.wrapped,
            "new_master_key_id": new.master_key_id,
        },
    )
    return cur.rowcount == 1


# --- delivery (bitloot/webhooks/delivery.py) ---------------------------------------------


@dataclass(frozen=True)
class DeliveryEndpoint:
    """What the delivery job reads of its endpoint."""

    id: uuid.UUID
    url: str
    enabled: bool
    removed_at: datetime | None


@dataclass(frozen=True)
class PairHead:
    """The oldest pending delivery of one (endpoint, order), with its event."""

    message_id: int
    attempts: int
    next_attempt_at: datetime
    due: bool
    msg_id: str
    event_type: str
    data: dict[str, Any]
    created_at: datetime
    round_attempts: int


@dataclass(frozen=True)
class SettledAttempt:
    """The attempt row written, and when the delivery is tried next if still pending."""

    attempt: int
    next_attempt_at: datetime


async def delivery_endpoint(conn: Conn, endpoint_id: uuid.UUID) -> DeliveryEndpoint | None:
    """The endpoint as the delivery job needs it (removed ones included), or None."""
    async with conn.cursor(row_factory=class_row(DeliveryEndpoint)) as cur:
        await cur.execute(Q["delivery_endpoint"], {"endpoint_id": endpoint_id})
        return await cur.fetchone()


async def pair_head(conn: Conn, endpoint_id: uuid.UUID, order_id: uuid.UUID) -> PairHead | None:
    """The pair's oldest pending delivery, or None when nothing is pending."""
    async with conn.cursor(row_factory=class_row(PairHead)) as cur:
        await cur.execute(Q["pair_head"], {"endpoint_id": endpoint_id, "order_id": order_id})
        return await cur.fetchone()


async def settle_attempt(
    conn: Conn,
    endpoint_id: uuid.UUID,
    head: PairHead,
    *,
    outcome: str,
    status: str,
    delay: float | None,
    status_code: int | None,
    latency_ms: float | None,
    error: str | None,
) -> SettledAttempt | None:
    """Update the delivery after one attempt and append the attempt's row; None (nothing
    written) when the delivery is no longer as `head` found it."""
    async with conn.cursor(row_factory=class_row(SettledAttempt)) as cur:
        await cur.execute(
            Q["settle_attempt"],
            {
                "endpoint_id": endpoint_id,
                "message_id": head.message_id,
                "attempts": head.attempts,
                "status": status,
                "delay": delay,
                "outcome": outcome,
                "status_code": status_code,
                "latency_ms": latency_ms,
                "error": error,
            },
        )
        return await cur.fetchone()


async def fail_pair_deliveries(
    conn: Conn, endpoint_id: uuid.UUID, order_id: uuid.UUID, error: str
) -> int:
    """Fail the pair's pending deliveries with `error`; how many."""
    cur = await conn.execute(
        Q["fail_pair_deliveries"],
        {"endpoint_id": endpoint_id, "order_id": order_id, "error": error},
    )
    return cur.rowcount


async def disable_failing_endpoint(
    conn: Conn, endpoint_id: uuid.UUID, *, event_at: datetime, error: str
) -> str | None:
    """Disable the endpoint if it accepted no delivery since `event_at`; the reason written,
    or None when it was left alone."""
    cur = await conn.execute(
        Q["disable_failing_endpoint"],
        {"endpoint_id": endpoint_id, "event_at": event_at, "error": error},
    )
    row = await cur.fetchone()
    return str(row[0]) if row else None


async def defer_pair_job(conn: Conn, endpoint_id: uuid.UUID, order_id: uuid.UUID) -> None:
    """Queue the pair's job, due now, unless one is waiting already."""
    await conn.execute(Q["defer_pair_job"], {"endpoint_id": endpoint_id, "order_id": order_id})


async def hasten_pair_job(conn: Conn, lock: str, at: datetime | None) -> None:
    """Bring the pair's waiting job forward to `at` (None: now) if it was due later."""
    await conn.execute(Q["hasten_pair_job"], {"lock": lock, "at": at})


async def redeliver_message(conn: Conn, endpoint_id: uuid.UUID, msg_id: str) -> list[uuid.UUID]:
    """Put the endpoint's delivery of one event back to pending; its order ([] if none)."""
    cur = await conn.execute(Q["redeliver_message"], {"endpoint_id": endpoint_id, "msg_id": msg_id})
    return [row[0] for row in await cur.fetchall()]


async def redeliver_failed_since(
    conn: Conn, endpoint_id: uuid.UUID, since: datetime
) -> list[uuid.UUID]:
    """Put the endpoint's failed deliveries of events since `since` back to pending; the
    order of each (one entry per delivery)."""
    cur = await conn.execute(
        Q["redeliver_failed_since"], {"endpoint_id": endpoint_id, "since": since}
    )
    return [row[0] for row in await cur.fetchall()]


async def requeue_stranded_pairs(conn: Conn) -> int:
    """Queue a job for every pair whose due delivery has none; how many."""
    cur = await conn.execute(Q["requeue_stranded_pairs"])
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def oldest_pending_age(conn: Conn) -> float:
    """Seconds since the oldest event pending for an enabled endpoint happened (0: none)."""
    cur = await conn.execute(Q["oldest_pending_age"])
    row = await cur.fetchone()
    return float(row[0]) if row else 0.0
