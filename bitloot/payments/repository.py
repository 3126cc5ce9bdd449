"""The payments domain's queries (`queries.sql`): one function per statement, no rules."""

from __future__ import annotations

from typing import Any

import psycopg

from bitloot.db.queries import QuerySet
from bitloot.inbox.service import EventOutcome, Outcome

Q = QuerySet("bitloot.payments")
Conn = psycopg.AsyncConnection[Any]


async def apply_ipn(conn: Conn, params: dict[str, Any]) -> EventOutcome:
    """One call of `bitloot_apply_ipn` (migration 0020): the report stored and applied."""
    cur = await conn.execute(Q["apply_ipn"], params)
    row = await cur.fetchone()
    assert row is not None  # the function always returns one row
    outcome, needs_attention, duplicate, enqueued, order_id = row
    return EventOutcome(
        Outcome.stored(outcome),
        duplicate=duplicate,
        needs_attention=needs_attention,
        order_id=order_id,
        enqueued=enqueued,
    )


async def stale_payments(conn: Conn, minutes: int, limit: int) -> list[str]:
    """Ids of payments not final and not updated for `minutes`, oldest first."""
    cur = await conn.execute(Q["stale_payments"], {"minutes": minutes, "limit": limit})
    return [str(row[0]) for row in await cur.fetchall()]


async def touch_payment(conn: Conn, payment_id: str) -> None:
    """Note that the payment was just checked (the reconciler then waits again)."""
    await conn.execute(Q["touch_payment"], {"payment_id": payment_id})
