"""Accepting a short payment: an admin decides an underpaid order counts as paid.

`accept_payment` runs in the caller's transaction (which named the admin with `set_actor`),
under the order's row lock. The `payment_acceptances` row it writes first is the evidence
the orders trigger asks for (`bitloot_payment_evidence`, migration 0012) before
`underpaid -> paid` (migration 0014); the fulfillment job and the customer's receipt
(`payment_received`, the amount that arrived, marked accepted) are queued in the same
transaction, so the order is never paid without its job. Only an underpaid order can be
accepted; a repeat on an order already paid by an acceptance answers that acceptance and
changes nothing. A shortfall within `BITLOOT_PAYMENT_TOLERANCE` never gets here: the
payment itself is the evidence, and the IPN pays the order.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import class_row

from bitloot.db.queries import QuerySet
from bitloot.delivery.service import queue_notice
from bitloot.fulfillment import service as fulfillment
from bitloot.orders import service as orders
from bitloot.payments.refunds import NotSettleable, amount_paid, cents, lock_order

Q = QuerySet("bitloot.payments", "settlement_queries.sql")
Conn = psycopg.AsyncConnection[Any]


@dataclass(frozen=True)
class Acceptance:
    """A recorded acceptance."""

    id: int
    order_id: uuid.UUID
    admin_id: str
    reason: str
    accepted_at: datetime


@dataclass(frozen=True)
class AcceptanceDone:
    """What `accept_payment` did: the acceptance, whether this call made it, what arrived
    (order currency) and the order's currency and statuses now."""

    acceptance: Acceptance
    created: bool
    received: Decimal
    currency: str
    status: str
    fulfillment_status: str


async def accept_payment(
    conn: Conn, order_id: uuid.UUID, *, admin_id: str, reason: str
) -> AcceptanceDone:
    """Accept an underpaid order's payment: it becomes paid and its fulfillment is queued.
    `NotSettleable` unless it is underpaid (or already paid by an acceptance: a no-op)."""
    order = await lock_order(conn, order_id)
    received = await amount_paid(conn, order_id)
    existing = await _acceptance_for(conn, order_id)
    if existing is not None and order.status in ("paid", "fulfilled"):
        return AcceptanceDone(
            existing, False, received, order.currency, order.status, order.fulfillment_status
        )
    if order.status != "underpaid":
        raise NotSettleable(
            f"Only an underpaid order's payment can be accepted; this one is {order.status}.",
            order.status,
            order.fulfillment_status,
        )
    acceptance = await _insert_acceptance(conn, order_id, admin_id, reason)
    moved = await orders.move_status(
        conn, order_id, "paid", from_statuses=["underpaid"], reason=reason, current=order.status
    )
    assert moved, "the order changed under its row lock"
    await fulfillment.defer_fulfillment(conn, order_id)
    details = {"amount": cents(received), "currency": order.currency, "accepted": "true"}
    await queue_notice(conn, order_id, "payment_received", details=details)
    return AcceptanceDone(
        acceptance, True, received, order.currency, "paid", order.fulfillment_status
    )


async def _acceptance_for(conn: Conn, order_id: uuid.UUID) -> Acceptance | None:
    async with conn.cursor(row_factory=class_row(Acceptance)) as cur:
        await cur.execute(Q["acceptance_for"], {"order_id": order_id})
        return await cur.fetchone()


async def _insert_acceptance(
    conn: Conn, order_id: uuid.UUID, admin_id: str, reason: str
) -> Acceptance:
    async with conn.cursor(row_factory=class_row(Acceptance)) as cur:
        await cur.execute(
            Q["insert_acceptance"], {"order_id": order_id, "admin_id": admin_id, "reason": reason}
        )
        acceptance = await cur.fetchone()
    assert acceptance is not None
    return acceptance
