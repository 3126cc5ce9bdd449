"""The email outbox's queries: one row per email, so a retried job never sends twice.

Every function takes the caller's connection first and never commits: the caller (the
fulfillment transaction, the admin handler, the send task) owns the transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import class_row, dict_row, scalar_row
from psycopg.types.json import Jsonb

from bitloot.db.queries import QuerySet
from bitloot.delivery.compose import OrderFacts
from bitloot.i18n.products import ProductFacts

_q = QuerySet("bitloot.delivery")

# last_error is shown to admins and in the fulfillment_timeline view; keep it a line.
MAX_ERROR_LENGTH = 300
# Concurrent admin resends can race for the same generation number; each lost race costs
# one retry, so a handful is plenty.
_RESEND_RACE_RETRIES = 5


class OutboxRowNotFound(LookupError):
    """No email_outbox row has this id."""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """An email_outbox row as the sending task needs it."""

    id: int
    order_id: uuid.UUID | None  # None only for a recovery email
    kind: str
    generation: int
    to_address: str
    status: str
    attempts: int
    details: dict[str, str]
    recovery_request_id: int | None


async def create_delivery_email(
    conn: psycopg.AsyncConnection[Any], order_id: uuid.UUID, to_address: str
) -> int:
    """Add generation 1 of the order's delivery email, or return the existing row's id."""
    async with conn.cursor(row_factory=scalar_row) as cur:
        await cur.execute(
            _q["insert_delivery_email"], {"order_id": order_id, "to_address": to_address}
        )
        inserted: int | None = await cur.fetchone()
        if inserted is not None:
            return inserted
        # Read in a new statement: under READ COMMITTED it sees a row that a concurrent
        # transaction committed while our INSERT waited on it.
        await cur.execute(_q["find_delivery_email"], {"order_id": order_id, "generation": 1})
        existing: int | None = await cur.fetchone()
    if existing is None:
        raise RuntimeError("delivery email neither inserted nor found")
    return existing


async def create_notice(
    conn: psycopg.AsyncConnection[Any],
    order_id: uuid.UUID,
    kind: str,
    *,
    to_address: str,
    details: dict[str, str],
    generation: int,
) -> int | None:
    """Add the order's `kind` notice; None when that (order, kind, generation) exists."""
    async with conn.cursor(row_factory=scalar_row) as cur:
        await cur.execute(
            _q["insert_notice"],
            {
                "order_id": order_id,
                "kind": kind,
                "generation": generation,
                "to_address": to_address,
                "details": Jsonb(details),
            },
        )
        inserted: int | None = await cur.fetchone()
    return inserted


async def create_recovery_email(
    conn: psycopg.AsyncConnection[Any], request_id: int, to_address: str
) -> int:
    """Add the recovery email answering `request_id`; returns its id."""
    async with conn.cursor(row_factory=scalar_row) as cur:
        await cur.execute(
            _q["insert_recovery_email"], {"request_id": request_id, "to_address": to_address}
        )
        new_id: int | None = await cur.fetchone()
    if new_id is None:
        raise RuntimeError("recovery email not inserted")
    return new_id


async def recovery_orders(conn: psycopg.AsyncConnection[Any], request_id: int) -> list[uuid.UUID]:
    """The orders a recovery email lists (newest first)."""
    async with conn.cursor(row_factory=scalar_row) as cur:
        await cur.execute(_q["recovery_orders"], {"request_id": request_id})
        ids: list[uuid.UUID] = await cur.fetchall()
    return ids


async def next_generation_for_resend(
    conn: psycopg.AsyncConnection[Any], order_id: uuid.UUID, to_address: str
) -> int:
    """Add the next generation (max + 1) of the order's delivery email; returns the new row id."""
    async with conn.cursor(row_factory=scalar_row) as cur:
        for _ in range(_RESEND_RACE_RETRIES):
            await cur.execute(
                _q["insert_next_delivery_generation"],
                {"order_id": order_id, "to_address": to_address},
            )
            new_id: int | None = await cur.fetchone()
            if new_id is not None:
                return new_id
    raise RuntimeError("could not allocate a delivery email generation (concurrent resends)")


async def claim(conn: psycopg.AsyncConnection[Any], outbox_id: int) -> OutboxRow | None:
    """Lock the row for this transaction; None when it was already sent.

    Raises `OutboxRowNotFound` for an unknown id. Must run inside a transaction, or the lock
    ends with the statement.
    """
    async with conn.cursor(row_factory=class_row(OutboxRow)) as cur:
        await cur.execute(_q["claim_email"], {"id": outbox_id})
        row = await cur.fetchone()
    if row is None:
        raise OutboxRowNotFound(f"email_outbox row {outbox_id} does not exist")
    return None if row.status == "sent" else row


async def mark_sent(conn: psycopg.AsyncConnection[Any], outbox_id: int, message_id: str) -> None:
    """Record the row as sent with its Message-ID (counts as one attempt)."""
    async with conn.cursor(row_factory=scalar_row) as cur:
        await cur.execute(_q["mark_email_sent"], {"id": outbox_id, "message_id": message_id})
        if await cur.fetchone() is None:
            raise OutboxRowNotFound(f"email_outbox row {outbox_id} is missing or already sent")


async def mark_attempt_failed(
    conn: psycopg.AsyncConnection[Any], outbox_id: int, error: str, final: bool
) -> int:
    """Count a failed attempt with a short, secret-free `error`; `final` marks it 'failed'.

    Returns the number of attempts so far. A row that is already sent is left alone.
    """
    async with conn.cursor(row_factory=scalar_row) as cur:
        await cur.execute(
            _q["mark_email_attempt_failed"],
            {"id": outbox_id, "error": _one_line(error), "final": final},
        )
        attempts: int | None = await cur.fetchone()
    if attempts is None:
        raise OutboxRowNotFound(f"email_outbox row {outbox_id} is missing or already sent")
    return attempts


async def order_lines(
    conn: psycopg.AsyncConnection[Any], order_id: uuid.UUID
) -> list[ProductFacts]:
    """The order's lines as stored at POST /orders (order_items), by name."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_q["order_lines"], {"order_id": order_id})
        rows = await cur.fetchall()
    return [
        ProductFacts(**{**row, "excluded_countries": tuple(row["excluded_countries"] or ())})
        for row in rows
    ]


async def order_facts(conn: psycopg.AsyncConnection[Any], order_id: uuid.UUID) -> OrderFacts:
    """The order's total, currency, language, date and lines, as its emails name them."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_q["order_facts"], {"order_id": order_id})
        row = await cur.fetchone()
    if row is None:
        raise LookupError(f"order {order_id} does not exist")
    items = await order_lines(conn, order_id)
    return OrderFacts(order_id=order_id, items=tuple(items), **row)


async def order_email(conn: psycopg.AsyncConnection[Any], order_id: uuid.UUID) -> str:
    """The address the order was placed with."""
    async with conn.cursor(row_factory=scalar_row) as cur:
        await cur.execute(_q["order_email"], {"order_id": order_id})
        email: str | None = await cur.fetchone()
    if email is None:
        raise LookupError(f"order {order_id} does not exist")
    return email


async def generation_of(conn: psycopg.AsyncConnection[Any], outbox_id: int) -> int:
    """The generation of an outbox row."""
    async with conn.cursor(row_factory=scalar_row) as cur:
        await cur.execute(_q["outbox_generation"], {"outbox_id": outbox_id})
        generation: int | None = await cur.fetchone()
    if generation is None:
        raise OutboxRowNotFound(f"email_outbox row {outbox_id} does not exist")
    return generation


def _one_line(error: str) -> str:
    text = " ".join(error.split())
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 3] + "..."
