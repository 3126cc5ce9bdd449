"""Applying a verified NOWPayments IPN: store it once, update the payment, move the order.

Everything here runs in the caller's transaction: the webhook row, the payment, the order
transition and the fulfillment job commit together or not at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg

from bitloot.db.queries import QuerySet
from bitloot.payments.models import Ipn

Q = QuerySet("bitloot.payments")
QO = QuerySet("bitloot.orders")

IN_PROGRESS = {"confirming", "confirmed", "sending"}
# Order statuses from which a payment report may still move the order.
OPEN_ORDER = ["created", "waiting", "confirming"]
# Settled order statuses a refund may still move (order_status_transitions allows them).
REFUNDABLE = ["paid", "fulfilled", "underpaid"]

EnqueueFulfillment = Callable[[psycopg.AsyncConnection[Any], uuid.UUID], Awaitable[None]]


@dataclass(frozen=True)
class IpnOutcome:
    """What applying one IPN did; `outcome` is stored on the webhook event."""

    outcome: str
    duplicate: bool = False
    needs_attention: bool = False
    order_id: uuid.UUID | None = None
    enqueued: bool = False


def dedup_key(ipn: Ipn) -> str:
    """One key per (payment, status, amounts): a resend of the same report is a duplicate."""

    def amount(value: Decimal | None) -> str:
        return "-" if value is None else format(value.normalize(), "f")

    return ":".join(
        [
            ipn.payment_id,
            ipn.payment_status,
            amount(ipn.actually_paid),
            amount(ipn.pay_amount),
            amount(ipn.price_amount),
        ]
    )


def _order_uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


def paid_in_fiat(ipn: Ipn) -> Decimal | None:
    """How much of the price the customer really sent, in the price currency."""
    if ipn.price_amount is None:
        return None
    if ipn.actually_paid is None or not ipn.pay_amount:
        return ipn.price_amount if ipn.payment_status == "finished" else None
    return ipn.price_amount * min(Decimal(1), ipn.actually_paid / ipn.pay_amount)


@dataclass(frozen=True)
class PaymentPolicy:
    """The settings that decide when a payment pays for an order."""

    paid_on: str = "finished"
    tolerance: Decimal = Decimal("0")

    def is_final(self, status: str) -> bool:
        """Whether this status releases fulfillment (`confirmed` also counts when configured)."""
        if status == "finished":
            return True
        return self.paid_on == "confirmed" and status in ("confirmed", "sending")


async def apply_ipn(
    conn: psycopg.AsyncConnection[Any],
    ipn: Ipn,
    *,
    raw_body: str,
    signature_variant: str,
    policy: PaymentPolicy,
    enqueue_fulfillment: EnqueueFulfillment,
) -> IpnOutcome:
    """Store the IPN once and apply it; a duplicate changes nothing and says so."""
    order_id = _order_uuid(ipn.order_id)
    cur = await conn.execute(
        Q["insert_webhook_event"],
        {
            "provider": "nowpayments",
            "dedup_key": dedup_key(ipn),
            "event_type": ipn.payment_status,
            "external_id": ipn.payment_id,
            "order_id": order_id,
            "raw_body": raw_body,
            "signature_variant": signature_variant,
        },
    )
    event = await cur.fetchone()
    if event is None:
        return IpnOutcome("duplicate", duplicate=True, order_id=order_id)

    result = await _apply(conn, ipn, order_id, policy, enqueue_fulfillment)
    await conn.execute(
        Q["finish_webhook_event"],
        {"id": event[0], "outcome": result.outcome, "needs_attention": result.needs_attention},
    )
    return result


async def _apply(
    conn: psycopg.AsyncConnection[Any],
    ipn: Ipn,
    order_id: uuid.UUID | None,
    policy: PaymentPolicy,
    enqueue_fulfillment: EnqueueFulfillment,
) -> IpnOutcome:
    if order_id is None:
        return IpnOutcome("unknown_order", needs_attention=True)
    # Lock the order first: IPNs for one order are applied one at a time.
    cur = await conn.execute(QO["lock_order"], {"order_id": order_id})
    order = await cur.fetchone()
    if order is None:
        return IpnOutcome("unknown_order", needs_attention=True)
    _, currency, total, status, _ = order

    cur = await conn.execute(Q["payment_order"], {"payment_id": ipn.payment_id})
    known = await cur.fetchone()
    if known is not None and known[0] != order_id:
        return IpnOutcome("payment_belongs_to_another_order", needs_attention=True)

    cur = await conn.execute(Q["upsert_payment"], _payment_params(ipn, order_id))
    if await cur.fetchone() is None:
        return IpnOutcome("stale", order_id=order_id)

    if ipn.parent_payment_id is not None:
        # A re-deposit: a top-up of (or a change to) an earlier payment, never a payment of
        # the order on its own. Orders are paid by one payment; a human settles the rest.
        return IpnOutcome(f"redeposit_{ipn.payment_status}", needs_attention=True,
                          order_id=order_id)  # fmt: skip
    move = _decide(ipn, currency, total, policy)
    if move is None:
        return IpnOutcome(f"payment_{ipn.payment_status}", order_id=order_id)
    target, reason, attention = move
    if status not in OPEN_ORDER and not (target == "refunded" and status in REFUNDABLE):
        # e.g. a second payment failing after the order was already paid: nothing to move.
        return IpnOutcome(f"order_already_{status}", needs_attention=attention, order_id=order_id)
    if target == "confirming" and status == "confirming":
        return IpnOutcome("payment_in_progress", order_id=order_id)
    moved = await _move(conn, order_id, status, target, reason)
    if not moved:
        return IpnOutcome(f"order_already_{status}", needs_attention=True, order_id=order_id)
    enqueued = False
    if target == "paid":
        await enqueue_fulfillment(conn, order_id)
        enqueued = True
    return IpnOutcome(f"order_{target}", needs_attention=attention, order_id=order_id,
                      enqueued=enqueued)  # fmt: skip


def _decide(
    ipn: Ipn, currency: str, total: Decimal, policy: PaymentPolicy
) -> tuple[str, str | None, bool] | None:
    """The order status this payment report leads to: (status, reason, needs attention)."""
    status = ipn.payment_status
    if status in ("failed", "expired", "refunded"):
        return status, f"payment {ipn.payment_id} {status}", status == "refunded"
    if status == "partially_paid":
        return "underpaid", _shortfall(ipn, total, currency), True
    if policy.is_final(status):
        if ipn.price_currency is not None and ipn.price_currency != currency:
            reason = f"paid in {ipn.price_currency}, order is in {currency}"
            return "failed", reason, True
        paid = paid_in_fiat(ipn)
        if paid is None or paid + policy.tolerance < total:
            return "underpaid", _shortfall(ipn, total, currency), True
        return "paid", f"payment {ipn.payment_id} {status}", False
    if status in IN_PROGRESS:
        return "confirming", None, False
    return None  # waiting: nothing to do yet


def _shortfall(ipn: Ipn, total: Decimal, currency: str) -> str:
    paid = paid_in_fiat(ipn)
    shown = "unknown" if paid is None else f"{paid.quantize(Decimal('0.01'))}"
    return f"paid {shown} of {total} {currency}"


async def _move(
    conn: psycopg.AsyncConnection[Any],
    order_id: uuid.UUID,
    current: str,
    target: str,
    reason: str | None,
) -> bool:
    # created/waiting -> paid skips confirming: the state machine allows waiting -> paid, and
    # an order still `created` (invoice answer lost) first moves to waiting.
    if current == "created":
        await conn.execute(
            QO["move_order_status"],
            {"order_id": order_id, "to_status": "waiting", "reason": None,
             "from_statuses": ["created"]},
        )  # fmt: skip
    cur = await conn.execute(
        QO["move_order_status"],
        {"order_id": order_id, "to_status": target, "reason": reason,
         "from_statuses": [*OPEN_ORDER, *REFUNDABLE]},
    )  # fmt: skip
    return await cur.fetchone() is not None


def _payment_params(ipn: Ipn, order_id: uuid.UUID) -> dict[str, Any]:
    return {
        "payment_id": ipn.payment_id,
        "order_id": order_id,
        "invoice_id": ipn.invoice_id,
        "parent_payment_id": ipn.parent_payment_id,
        "status": ipn.payment_status,
        "price_amount": ipn.price_amount,
        "price_currency": ipn.price_currency,
        "pay_amount": ipn.pay_amount,
        "pay_currency": ipn.pay_currency,
        "actually_paid": ipn.actually_paid,
        "actually_paid_at_fiat": ipn.actually_paid_at_fiat,
        "outcome_amount": ipn.outcome_amount,
        "outcome_currency": ipn.outcome_currency,
        "provider_updated_at": ipn.updated_at,
    }
