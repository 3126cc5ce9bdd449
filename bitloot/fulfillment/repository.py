"""The fulfillment domain's queries (`queries.sql`): one function per statement, no rules.

Every function takes the caller's connection and never commits; `service` and `purchase`
own the rules."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import class_row

from bitloot.db.connect import set_actor
from bitloot.db.queries import QuerySet

Q = QuerySet("bitloot.fulfillment")
Conn = psycopg.AsyncConnection[Any]


@dataclass(frozen=True)
class OrderState:
    """The order row as fulfillment sees it, read under a row lock."""

    id: uuid.UUID
    status: str
    fulfillment_status: str
    kinguin_placement_started_at: datetime | None
    paid_at: datetime | None


@dataclass(frozen=True)
class OrderLine:
    """What to buy for one order line, and the most to pay per unit (EUR)."""

    product_id: str
    qty: int
    max_cost: Decimal
    text_only: bool
    name: str


@dataclass(frozen=True)
class KinguinOrderRow:
    """The Kinguin order we recorded for one of ours."""

    kinguin_order_id: str
    status: str
    polls: int


@dataclass(frozen=True)
class StoredKey:
    """One encrypted key, uploaded, ready to be recorded in the delivery log."""

    key_id: str
    product_id: str | None
    object_key: str
    content_type: str
    wrapped_data_key: bytes
    master_key_id: str


@dataclass(frozen=True)
class PassStart:
    """What one fulfillment pass reads under the order's row lock before it decides."""

    state: OrderState | None
    recorded: KinguinOrderRow | None
    evidence: str | None  # asked only while nothing is bought (None then means: no proof)
    lines: list[OrderLine]


async def begin_pass(conn: Conn, order_id: uuid.UUID, actor: str) -> PassStart:
    """Name the actor, lock the order and read what a pass needs, in one round trip.

    The statements go out together in a psycopg pipeline and run in order, so every read
    after the lock sees the order as locked (READ COMMITTED: each statement takes a new
    snapshot). The caller holds the transaction (and may keep the pipeline open for the
    writes that follow)."""
    params = {"order_id": order_id}
    async with conn.pipeline():
        await set_actor(conn, actor)
        lock = conn.cursor(row_factory=class_row(OrderState))
        recorded = conn.cursor(row_factory=class_row(KinguinOrderRow))
        evidence = conn.cursor()
        lines = conn.cursor(row_factory=class_row(OrderLine))
        await lock.execute(Q["lock_order"], params)
        await recorded.execute(Q["kinguin_order_for"], params)
        await evidence.execute(Q["payment_evidence_unless_bought"], params)
        await lines.execute(Q["order_lines"], params)
        state = await lock.fetchone()
        kinguin_order = await recorded.fetchone()
        proof = await evidence.fetchone()
        order_lines = await lines.fetchall()
    return PassStart(
        state=state,
        recorded=kinguin_order,
        evidence=None if proof is None else proof[1],
        lines=order_lines,
    )


async def lock_order(conn: Conn, order_id: uuid.UUID) -> OrderState | None:
    """The order under `FOR UPDATE`, so one transaction at a time decides its fulfillment."""
    async with conn.cursor(row_factory=class_row(OrderState)) as cur:
        await cur.execute(Q["lock_order"], {"order_id": order_id})
        return await cur.fetchone()


async def start_processing(conn: Conn, order_id: uuid.UUID) -> None:
    """`pending -> processing` for a paid order (no-op otherwise)."""
    await conn.execute(Q["start_processing"], {"order_id": order_id})


async def mark_placement_started(conn: Conn, order_id: uuid.UUID) -> None:
    """Remember, before buying, that a Kinguin order may exist from now on."""
    await conn.execute(Q["mark_placement_started"], {"order_id": order_id})


async def record_kinguin_order(
    conn: Conn,
    order_id: uuid.UUID,
    kinguin_order_id: str,
    status: str,
    payment_price: Decimal | None,
) -> None:
    """Record the Kinguin order bought for this order (first record wins)."""
    await conn.execute(
        Q["record_kinguin_order"],
        {
            "order_id": order_id,
            "kinguin_order_id": kinguin_order_id,
            "status": status,
            "payment_price": payment_price,
        },
    )


async def update_kinguin_status(conn: Conn, order_id: uuid.UUID, status: str) -> None:
    """Store what Kinguin last said about the order's status."""
    await conn.execute(Q["update_kinguin_status"], {"order_id": order_id, "status": status})


async def bump_polls(conn: Conn, order_id: uuid.UUID) -> int:
    """Count one more poll for keys; returns the new count."""
    cur = await conn.execute(Q["bump_polls"], {"order_id": order_id})
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def mark_failed(conn: Conn, order_id: uuid.UUID, reason: str) -> None:
    """End the fulfillment in `failed` with a reason admins can read."""
    await conn.execute(Q["mark_failed"], {"order_id": order_id, "reason": reason[:500]})


async def record_keys_and_fulfill(
    conn: Conn, order_id: uuid.UUID, keys: list[StoredKey], retention_days: int
) -> float | None:
    """Write the delivery log and mark the order fulfilled; seconds from payment to key.

    None when the order was no longer `paid`/`processing` (another job finished it first).
    """
    async with conn.cursor() as cur:
        await cur.executemany(
            Q["insert_key_row"],
            [
                {
                    "order_id": order_id,
                    "key_id": k.key_id,
                    "product_id": k.product_id,
                    "object_key": k.object_key,
                    "content_type": k.content_type,
                    "wrapped_data_key": k.wrapped_data_key,
                    "master_key_id": k.master_key_id,
                    "retention_days": retention_days,
                }
                for k in keys
            ],
        )
    cur = await conn.execute(Q["mark_fulfilled"], {"order_id": order_id})
    row = await cur.fetchone()
    return None if row is None else float(row[0] or 0.0)


@dataclass(frozen=True)
class KinguinCallRow:
    """One HTTP attempt to Kinguin made for an order (a `kinguin_calls` row)."""

    endpoint: str
    attempt: int
    outcome: str
    http_status: int | None
    error_code: str | None
    latency_ms: Decimal


async def insert_kinguin_calls(
    conn: Conn,
    order_id: uuid.UUID,
    calls: list[KinguinCallRow],
    replacement_id: int | None = None,
) -> None:
    """Append the calls of one pass, in the order they were made (for a key replacement's
    pass, marked with it)."""
    async with conn.cursor() as cur:
        await cur.executemany(
            Q["insert_kinguin_call"],
            [
                {
                    "order_id": order_id,
                    "replacement_id": replacement_id,
                    "endpoint": c.endpoint,
                    "attempt": c.attempt,
                    "outcome": c.outcome,
                    "http_status": c.http_status,
                    "error_code": c.error_code,
                    "latency_ms": c.latency_ms,
                }
                for c in calls
            ],
        )


@dataclass(frozen=True)
class EventOrder:
    """The order a Kinguin event is about, read under its row lock."""

    id: uuid.UUID
    status: str
    fulfillment_status: str
    kinguin_order_id: str | None
    status_updated_at: datetime | None
    kinguin_status: str | None


async def order_for_kinguin_event(
    conn: Conn, kinguin_order_id: str, external_id: uuid.UUID | None
) -> EventOrder | None:
    """The order an event names (by the Kinguin order we recorded, else by our id), locked."""
    cur = await conn.execute(
        Q["order_for_event"], {"kinguin_order_id": kinguin_order_id, "external_id": external_id}
    )
    found = await cur.fetchone()
    if found is None:
        return None
    async with conn.cursor(row_factory=class_row(EventOrder)) as ecur:
        await ecur.execute(Q["lock_event_order"], {"order_id": found[0]})
        return await ecur.fetchone()


async def advance_watermark(
    conn: Conn, order_id: uuid.UUID, status: str, updated_at: datetime, *, horizon: datetime
) -> None:
    """Store the event's status if it is newer than the last one stored, or if the one
    stored is dated past `horizon` (a future date is never a watermark)."""
    await conn.execute(
        Q["advance_watermark"],
        {"order_id": order_id, "status": status, "updated_at": updated_at, "horizon": horizon},
    )


@dataclass(frozen=True)
class StuckOrder:
    """A paid order unfulfilled with no job, what proves it paid, and whether we bought."""

    id: uuid.UUID
    evidence: str | None
    bought: bool


async def stuck_paid_orders(conn: Conn, minutes: int, limit: int) -> list[StuckOrder]:
    """Paid orders unfulfilled for `minutes` with no job queued or running for them."""
    async with conn.cursor(row_factory=class_row(StuckOrder)) as cur:
        await cur.execute(Q["stuck_paid_orders"], {"minutes": minutes, "limit": limit})
        return await cur.fetchall()


async def expire_keys(conn: Conn) -> int:
    """Mark keys past their retention `expired`; how many."""
    cur = await conn.execute(Q["expire_keys"])
    return len(await cur.fetchall())


async def expired_objects(conn: Conn, limit: int) -> list[tuple[uuid.UUID, str]]:
    """(row id, object key) of expired keys whose ciphertext is still stored."""
    cur = await conn.execute(Q["expired_objects"], {"limit": limit})
    return [(row[0], row[1]) for row in await cur.fetchall()]


async def mark_deleted(conn: Conn, row_id: uuid.UUID) -> None:
    """Record that an expired key's ciphertext was deleted."""
    await conn.execute(Q["mark_deleted"], {"id": row_id})


async def requeue_failed(conn: Conn, order_id: uuid.UUID) -> bool:
    """`failed -> pending` for a paid order; False when it was not paid and failed."""
    cur = await conn.execute(Q["requeue_failed_fulfillment"], {"order_id": order_id})
    return await cur.fetchone() is not None


async def reset_kinguin_polls(conn: Conn, order_id: uuid.UUID) -> str | None:
    """Start polling Kinguin over; the recorded Kinguin order id, if any."""
    cur = await conn.execute(Q["reset_kinguin_polls"], {"order_id": order_id})
    row = await cur.fetchone()
    return None if row is None else str(row[0])
