"""Refunding an order: the whole rule, in one place.

An admin pays the customer back in NOWPayments' dashboard, then records it here
(`POST /admin/orders/{id}/refund`). `refund_order` runs in the caller's transaction (which
named the admin with `set_actor`), under the order's row lock, and does everything or
nothing:

* **Which orders.** `paid` (also with its fulfillment failed), `fulfilled` and `underpaid`.
  Not while the fulfillment is `processing`: a Kinguin purchase may be in flight, and the
  keys it brings must not land on a refunded order (retry once it is fulfilled or failed).
  A `fulfill_order` job still queued for a refunded order buys nothing: it only works on
  `paid` orders.
* **How much.** By default `bitloot_amount_paid` (migration 0016): the total when a payment
  covered it, else what arrived, in the order currency, rounded down to cents. Given or
  not, it must be more than 0 and at most the total.
* **Once.** One refund per order (UNIQUE order_id). A repeat with the same reference (and
  the same amount, or none) answers the refund recorded and changes nothing; another
  reference or amount is a conflict.
* **What follows**, in the same transaction: the refund row, the order `refunded`, its keys
  revoked (download-link answers 410; objects deleted by the retention rule), its access
  tokens revoked, the customer's `refunded` notice queued (once per order), and the
  Kinguin key-return job deferred (`bitloot.fulfillment.returns`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

import psycopg
from psycopg.rows import class_row

from bitloot.auth import order_tokens
from bitloot.db.queries import QuerySet
from bitloot.delivery.service import queue_notice
from bitloot.fulfillment import service as fulfillment
from bitloot.orders import service as orders
from bitloot.web.cursor import Position

Q = QuerySet("bitloot.payments", "settlement_queries.sql")
Conn = psycopg.AsyncConnection[Any]

REFUNDABLE = ["paid", "fulfilled", "underpaid"]
CENT = Decimal("0.01")


@dataclass(frozen=True)
class OrderMoney:
    """The order's statuses and money, read under its row lock."""

    id: uuid.UUID
    status: str
    fulfillment_status: str
    total_amount: Decimal
    currency: str


@dataclass(frozen=True)
class Refund:
    """A recorded refund."""

    id: int
    order_id: uuid.UUID
    amount: Decimal
    currency: str
    reference: str
    reason: str
    admin_id: str
    created_at: datetime


@dataclass(frozen=True)
class RefundDone:
    """What `refund_order` did: the refund, whether this call made it, and for a new one
    the order's statuses before and how many keys and links it revoked."""

    refund: Refund
    created: bool
    from_status: str | None = None
    from_fulfillment_status: str | None = None
    revoked_keys: int = 0
    revoked_links: int = 0


class OrderNotFound(LookupError):
    """No order has this id."""


class NotSettleable(Exception):
    """The order is not in a state this settlement applies to; `retry_later` when it will be."""

    def __init__(
        self, message: str, status: str, fulfillment_status: str, *, retry_later: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.fulfillment_status = fulfillment_status
        self.retry_later = retry_later


class RefundConflict(Exception):
    """The order was already refunded with another reference or amount."""

    def __init__(self, existing: Refund) -> None:
        super().__init__("The order was already refunded with another reference or amount.")
        self.existing = existing


class BadAmount(ValueError):
    """The amount is not more than 0 and at most the order total."""


@dataclass(frozen=True)
class DueOrder:
    """One row of `refunds_due`."""

    order_id: uuid.UUID
    status: str
    fulfillment_status: str
    why: str
    email: str
    currency: str
    total_amount: Decimal
    amount_due: Decimal
    actually_paid: Decimal | None
    pay_currency: str | None
    since: datetime


async def refund_order(
    conn: Conn,
    order_id: uuid.UUID,
    *,
    admin_id: str,
    reason: str,
    reference: str,
    amount: Decimal | None,
) -> RefundDone:
    """Record the refund of an order and everything that follows it (see the module)."""
    order = await lock_order(conn, order_id)
    existing = await _refund_for(conn, order_id)
    if existing is not None:
        if existing.reference != reference or (amount is not None and amount != existing.amount):
            raise RefundConflict(existing)
        return RefundDone(existing, created=False)
    if order.status not in REFUNDABLE:
        raise NotSettleable(
            f"A {order.status} order cannot be refunded (only paid, fulfilled or underpaid).",
            order.status,
            order.fulfillment_status,
        )
    if order.fulfillment_status == "processing":
        raise NotSettleable(
            "A Kinguin purchase may be in flight for this order; retry once its fulfillment "
            "is fulfilled or failed.",
            order.status,
            order.fulfillment_status,
            retry_later=True,
        )
    value = amount if amount is not None else await amount_paid(conn, order_id)
    _check_amount(value, order, given=amount is not None)
    refund = await _insert_refund(
        conn, order, value, reference=reference, reason=reason, admin_id=admin_id
    )
    moved = await orders.move_status(
        conn, order_id, "refunded", from_statuses=REFUNDABLE, reason=reason, current=order.status
    )
    assert moved, "the order changed under its row lock"
    revoked_keys = await fulfillment.revoke_keys(conn, order_id, "refunded")
    revoked_links = await order_tokens.revoke(conn, order_id, reason="refunded")
    details = {"amount": cents(value), "currency": order.currency, "reference": reference}
    await queue_notice(conn, order_id, "refunded", details=details)
    await fulfillment.defer_key_return(conn, order_id)
    return RefundDone(
        refund,
        created=True,
        from_status=order.status,
        from_fulfillment_status=order.fulfillment_status,
        revoked_keys=revoked_keys,
        revoked_links=revoked_links,
    )


def _check_amount(value: Decimal, order: OrderMoney, *, given: bool) -> None:
    if value <= 0:
        if given:
            raise BadAmount("The amount must be more than 0.")
        raise BadAmount(
            "Nothing is known to have arrived for this order: give the amount refunded."
        )
    if value > order.total_amount:
        raise BadAmount(
            f"The amount cannot exceed the order total ({cents(order.total_amount)} "
            f"{order.currency})."
        )


async def lock_order(conn: Conn, order_id: uuid.UUID) -> OrderMoney:
    """The order's statuses and money under `FOR UPDATE`; `OrderNotFound` when unknown."""
    async with conn.cursor(row_factory=class_row(OrderMoney)) as cur:
        await cur.execute(Q["lock_order"], {"order_id": order_id})
        order = await cur.fetchone()
    if order is None:
        raise OrderNotFound(str(order_id))
    return order


async def amount_paid(conn: Conn, order_id: uuid.UUID) -> Decimal:
    """What the customer paid for the order, in its currency (`bitloot_amount_paid`)."""
    cur = await conn.execute(Q["amount_paid"], {"order_id": order_id})
    row = await cur.fetchone()
    return Decimal(0) if row is None or row[0] is None else Decimal(row[0])


async def refunds_due(
    conn: Conn, *, after: Position | None, limit: int
) -> tuple[list[DueOrder], bool]:
    """One page of `refunds_due`, newest first, after `after`; and whether more follow."""
    params: dict[str, Any] = {"before_at": "infinity", "before_id": "", "limit": limit + 1}
    if after is not None:
        params |= {"before_at": after.created_at, "before_id": after.id}
    async with conn.cursor(row_factory=class_row(DueOrder)) as cur:
        await cur.execute(Q["refunds_due_page"], params)
        rows = await cur.fetchall()
    return rows[:limit], len(rows) > limit


def cents(amount: Decimal) -> str:
    """An amount of the order currency as text, to the cent (rounded down)."""
    return str(amount.quantize(CENT, rounding=ROUND_DOWN))


async def _refund_for(conn: Conn, order_id: uuid.UUID) -> Refund | None:
    async with conn.cursor(row_factory=class_row(Refund)) as cur:
        await cur.execute(Q["refund_for"], {"order_id": order_id})
        return await cur.fetchone()


async def _insert_refund(
    conn: Conn, order: OrderMoney, amount: Decimal, *, reference: str, reason: str, admin_id: str
) -> Refund:
    async with conn.cursor(row_factory=class_row(Refund)) as cur:
        await cur.execute(
            Q["insert_refund"],
            {
                "order_id": order.id,
                "amount": amount,
                "currency": order.currency,
                "reference": reference,
                "reason": reason,
                "admin_id": admin_id,
            },
        )
        refund = await cur.fetchone()
    assert refund is not None
    return refund
