"""The recovery domain's queries (`queries.sql`): one function per statement, no rules.

Every function takes the caller's connection and never commits; `service` owns the rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg.rows import class_row

from bitloot.db.queries import QuerySet

Q = QuerySet("bitloot.recovery")
Conn = psycopg.AsyncConnection[Any]
Outcome = Literal["sent", "no_orders", "rate_limited"]


@dataclass(frozen=True)
class RecordedRequest:
    """The recovery_requests row just written, and where its email goes (if one does)."""

    request_id: int
    outcome: Outcome
    order_count: int
    to_address: str | None


async def record_request(
    conn: Conn,
    *,
    email: str,
    client_ip: str | None,
    rate_limited: bool,
    max_orders: int,
) -> RecordedRequest:
    """Search the address's recoverable orders, write the audit row and the orders it lists."""
    async with conn.cursor(row_factory=class_row(RecordedRequest)) as cur:
        await cur.execute(
            Q["record_request"],
            {
                "email": email,
                "client_ip": client_ip,
                "rate_limited": rate_limited,
                "max_orders": max_orders,
            },
        )
        row = await cur.fetchone()
    if row is None:
        raise RuntimeError("recovery request not recorded")
    return row
