"""Fulfillment's database side. Every function takes the caller's connection, never commits."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import class_row

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


async def lock_order(conn: Conn, order_id: uuid.UUID) -> OrderState | None:
    """The order under `FOR UPDATE`, so one transaction at a time decides its fulfillment."""
    async with conn.cursor(row_factory=class_row(OrderState)) as cur:
        await cur.execute(Q["lock_order"], {"order_id": order_id})
        return await cur.fetchone()


async def start_processing(conn: Conn, order_id: uuid.UUID) -> None:
    """`pending -> processing` for a paid order (no-op otherwise)."""
    await conn.execute(Q["start_processing"], {"order_id": order_id})


async def order_lines(conn: Conn, order_id: uuid.UUID) -> list[OrderLine]:
    """The products to buy."""
    async with conn.cursor(row_factory=class_row(OrderLine)) as cur:
        await cur.execute(Q["order_lines"], {"order_id": order_id})
        return await cur.fetchall()


async def mark_placement_started(conn: Conn, order_id: uuid.UUID) -> None:
    """Remember, before buying, that a Kinguin order may exist from now on."""
    await conn.execute(Q["mark_placement_started"], {"order_id": order_id})


async def kinguin_order_for(conn: Conn, order_id: uuid.UUID) -> KinguinOrderRow | None:
    """The Kinguin order recorded for this order, if any."""
    async with conn.cursor(row_factory=class_row(KinguinOrderRow)) as cur:
        await cur.execute(Q["kinguin_order_for"], {"order_id": order_id})
        return await cur.fetchone()


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
