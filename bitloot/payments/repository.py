"""The payments domain's queries (`queries.sql`): one function per statement, no rules."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from bitloot.db.queries import QuerySet

Q = QuerySet("bitloot.payments")
Conn = psycopg.AsyncConnection[Any]


async def upsert_payment(conn: Conn, params: dict[str, Any]) -> bool:
    """Insert or move the payment forward; False when this report moved nothing."""
    cur = await conn.execute(Q["upsert_payment"], params)
    return await cur.fetchone() is not None


async def payment_order(conn: Conn, payment_id: str) -> uuid.UUID | None:
    """The order a known payment belongs to (None: a payment we have not seen)."""
    cur = await conn.execute(Q["payment_order"], {"payment_id": payment_id})
    row = await cur.fetchone()
    return None if row is None else row[0]


async def stale_payments(conn: Conn, minutes: int, limit: int) -> list[str]:
    """Ids of payments not final and not updated for `minutes`, oldest first."""
    cur = await conn.execute(Q["stale_payments"], {"minutes": minutes, "limit": limit})
    return [str(row[0]) for row in await cur.fetchall()]


async def touch_payment(conn: Conn, payment_id: str) -> None:
    """Note that the payment was just checked (the reconciler then waits again)."""
    await conn.execute(Q["touch_payment"], {"payment_id": payment_id})
