"""When is an order paid? Applying a verified NOWPayments payment report (an IPN, or the
reconciler's read of the API): store it once, move the payment forward, move the order.

Everything here runs in the caller's transaction: the webhook row, the payment, the order
transition and the fulfillment job commit together or not at all. The rule (`_decide`): a
final payment (`finished`, or `confirmed`/`sending` with `BITLOOT_PAID_ON=confirmed`) pays
the order and queues the fulfillment only when the report proves it: `price_currency` is the
order's, `price_amount`, `actually_paid` and a positive `pay_amount` are all present, and
what arrived, in the price currency, covers the total (within `BITLOOT_PAYMENT_TOLERANCE`).
The database holds the same rule (`bitloot_payment_evidence`, migration 0012) and its
orders trigger refuses `paid` without it (SQLSTATE BL003): this module decides which status
a report leads to, the trigger is the guard that even psql cannot pass.
A status alone proves nothing (docs/external-apis.md 2.7: a re-deposit or a wrong-asset
deposit may be `finished` too). Less, or no proof, is `underpaid`; another currency
`failed`; `failed`, `expired` and `refunded` reports end the order so. A final report for
an order already underpaid never moves it: it is flagged, short or not. Re-deposits (child
payments) never move an order; they are flagged for a human. Reports never move an order
backwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, localcontext
from typing import Any

import psycopg
import structlog

from bitloot.config import Settings
from bitloot.db.connect import set_actor, set_reason
from bitloot.delivery.service import queue_notice
from bitloot.fulfillment.service import defer_fulfillment, requeue_stuck_orders
from bitloot.inbox import service as inbox
from bitloot.inbox.service import EventOutcome, Outcome
from bitloot.nowpayments.client import NowPaymentsError
from bitloot.nowpayments.models import Ipn
from bitloot.nowpayments.signature import MalformedIpn
from bitloot.orders import service as orders
from bitloot.payments import repository
from bitloot.payments.acceptance import Acceptance, AcceptanceDone, accept_payment
from bitloot.payments.refunds import (
    BadAmount,
    DueOrder,
    NotSettleable,
    OrderNotFound,
    Refund,
    RefundConflict,
    RefundDone,
    cents,
    refund_order,
    refunds_due,
)
from bitloot.resources import Resources

# The admin's settlements (refunds, accepted short payments) live in `refunds` and
# `acceptance`; other domains reach them through here.
__all__ = [
    "Acceptance",
    "AcceptanceDone",
    "BadAmount",
    "DueOrder",
    "NotSettleable",
    "OrderNotFound",
    "PaymentPolicy",
    "Refund",
    "RefundConflict",
    "RefundDone",
    "accept_payment",
    "apply_ipn",
    "cents",
    "reconcile",
    "refund_order",
    "refunds_due",
]

IN_PROGRESS = {"confirming", "confirmed", "sending"}
# Order statuses from which a payment report may still move the order.
OPEN_ORDER = ["created", "waiting", "confirming"]
# Settled order statuses a refund may still move (order_status_transitions allows them).
REFUNDABLE = ["paid", "fulfilled", "underpaid"]

log = structlog.get_logger(__name__)
BATCH = 100

EnqueueFulfillment = Callable[[psycopg.AsyncConnection[Any], uuid.UUID], Awaitable[None]]


def dedup_key(ipn: Ipn) -> str:
    """One key per (order, payment, status, amounts): a resend of the same report is a
    duplicate. The order is part of it: the same report naming another order is stored and
    judged (its payment belongs to another order: flagged), never answered "duplicate"."""

    def amount(value: Decimal | None) -> str:
        return "-" if value is None else format(value.normalize(), "f")

    order_id = inbox.order_uuid(ipn.order_id)
    return ":".join(
        [
            str(order_id) if order_id is not None else (ipn.order_id or "-"),
            ipn.payment_id,
            ipn.payment_status,
            amount(ipn.actually_paid),
            amount(ipn.pay_amount),
            amount(ipn.price_amount),
        ]
    )


def paid_in_fiat(ipn: Ipn) -> Decimal | None:
    """How much of the price the customer really sent, in the price currency; None when the
    report does not say (`_missing_evidence`).

    The price times the share of the crypto amount that arrived (`actually_paid` of
    `pay_amount`, both in `pay_currency`), never more than the price. Two other fields look
    like evidence and are not used (docs/external-apis.md 2.5, 2.7): `actually_paid_at_fiat`
    is only in the IPN example, with no stated currency or rate, and `GET /payment` (what
    the reconciler applies) does not have it, so the two paths would judge one payment
    differently; `outcome_amount` is what reaches our payout wallet, in `outcome_currency`
    and after NOWPayments' fees, so it is neither the price currency nor what was sent.
    """
    price, sent, due = ipn.price_amount, ipn.actually_paid, ipn.pay_amount
    if price is None or sent is None or due is None or due <= 0:
        return None
    return price * min(Decimal(1), sent / due)


def covers(ipn: Ipn, total: Decimal, tolerance: Decimal) -> bool:
    """Whether what arrived pays `total` within `tolerance`: `paid_in_fiat(ipn) + tolerance
    >= total`, multiplied out by `pay_amount` and computed exactly, as the database's
    `bitloot_payment_evidence` computes it (migration 0012), so the two never disagree by a
    rounding of the division."""
    price, sent, due = ipn.price_amount, ipn.actually_paid, ipn.pay_amount
    if price is None or sent is None or due is None or due <= 0:
        return False
    with localcontext() as exact:
        exact.prec = 200  # more digits than numeric(40, 18) products can have
        return price * min(due, sent) + tolerance * due >= total * due


def _missing_evidence(ipn: Ipn) -> list[str]:
    """What a final report lacks to prove the amount paid (empty: it proves it)."""
    checks = {
        "no price_currency": ipn.price_currency is not None,
        "no price_amount": ipn.price_amount is not None,
        "no actually_paid": ipn.actually_paid is not None,
        "no pay_amount": ipn.pay_amount is not None,
        "pay_amount 0": ipn.pay_amount is None or ipn.pay_amount > 0,
    }
    return [problem for problem, ok in checks.items() if not ok]


@dataclass(frozen=True)
class PaymentPolicy:
    """The settings that decide when a payment pays for an order."""

    paid_on: str = "finished"
    tolerance: Decimal = Decimal("0")

    @classmethod
    def of(cls, settings: Settings) -> PaymentPolicy:
        """The policy the settings configure."""
        return cls(paid_on=settings.paid_on, tolerance=settings.payment_tolerance)

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
    enqueue_fulfillment: EnqueueFulfillment = defer_fulfillment,
) -> EventOutcome:
    """Store the report once and apply it; a duplicate changes nothing and says so."""
    order_id = inbox.order_uuid(ipn.order_id)
    event_id = await inbox.store(
        conn,
        provider="nowpayments",
        dedup_key=dedup_key(ipn),
        event_type=ipn.payment_status,
        external_id=ipn.payment_id,
        order_id=order_id,
        raw_body=raw_body,
        signature_variant=signature_variant,
    )
    if event_id is None:
        return EventOutcome(Outcome.DUPLICATE, duplicate=True, order_id=order_id)
    result = await _apply(conn, ipn, order_id, policy, enqueue_fulfillment)
    await inbox.finish(conn, event_id, result)
    return result


async def _apply(
    conn: psycopg.AsyncConnection[Any],
    ipn: Ipn,
    order_id: uuid.UUID | None,
    policy: PaymentPolicy,
    enqueue_fulfillment: EnqueueFulfillment,
) -> EventOutcome:
    if order_id is None:
        return EventOutcome(Outcome.UNKNOWN_ORDER, needs_attention=True)
    # Lock the order first: reports for one order are applied one at a time.
    order = await orders.lock_for_payment(conn, order_id)
    if order is None:
        return EventOutcome(Outcome.UNKNOWN_ORDER, needs_attention=True)
    currency, total, status = order.currency, order.total, order.status

    known = await repository.payment_order(conn, ipn.payment_id)
    if known is not None and known != order_id:
        return EventOutcome(Outcome.PAYMENT_BELONGS_TO_ANOTHER_ORDER, needs_attention=True)

    if not await repository.upsert_payment(conn, _payment_params(ipn, order_id)):
        return EventOutcome(Outcome.STALE, order_id=order_id)

    if ipn.parent_payment_id is not None:
        # A re-deposit: a top-up of (or a change to) an earlier payment, never a payment of
        # the order on its own. Orders are paid by one payment; a human settles the rest.
        return EventOutcome(Outcome.redeposit(ipn.payment_status), needs_attention=True,
                          order_id=order_id)  # fmt: skip
    move = _decide(ipn, currency, total, policy)
    if move is None:
        # Only `waiting` leads nowhere (every other status moves or settles the order).
        return EventOutcome(Outcome.PAYMENT_WAITING, order_id=order_id)
    target, reason, attention = move
    if (
        status == "underpaid"
        and target in ("paid", "underpaid")
        and policy.is_final(ipn.payment_status)
    ):
        # A final report for an order already underpaid (after partially_paid, say).
        # Underpaid never becomes paid by itself (the transitions forbid it), and a human
        # must see either way: the customer topped up in full and waits for the keys, or
        # the payment ended short of the total (or unproven) for good.
        covered = target == "paid"
        outcome = Outcome.UNDERPAID_NOW_COVERED if covered else Outcome.STILL_UNDERPAID
        return EventOutcome(outcome, needs_attention=True, order_id=order_id)
    if status not in OPEN_ORDER and not (target == "refunded" and status in REFUNDABLE):
        # e.g. a second payment failing after the order was already paid: nothing to move.
        outcome = Outcome.order_already(status)
        return EventOutcome(outcome, needs_attention=attention, order_id=order_id)
    if target == "confirming" and status == "confirming":
        return EventOutcome(Outcome.PAYMENT_IN_PROGRESS, order_id=order_id)
    if reason is not None:
        # order_events keeps the cause (the shortfall, the currency mismatch), not only
        # which report arrived (the actor's reason, e.g. "IPN finished for 123").
        await set_reason(conn, reason)
    moved = await orders.move_status(
        conn,
        order_id,
        target,
        from_statuses=[*OPEN_ORDER, *REFUNDABLE],
        reason=reason,
        current=status,
    )
    if not moved:
        # Not expected under the row lock; an open status here has no outcome and raises.
        return EventOutcome(Outcome.order_already(status), needs_attention=True, order_id=order_id)
    enqueued = False
    if target == "paid":
        await enqueue_fulfillment(conn, order_id)
        enqueued = True
    await _notify(conn, order_id, target, ipn, total)
    return EventOutcome(Outcome.order_moved(target), needs_attention=attention, order_id=order_id,
                      enqueued=enqueued)  # fmt: skip


async def _notify(
    conn: psycopg.AsyncConnection[Any], order_id: uuid.UUID, target: str, ipn: Ipn, total: Decimal
) -> None:
    """The customer's notice of the move, in its transaction: a receipt when the order is
    paid, what arrived and what is missing when it is underpaid (once per order each).
    Amounts are in the order's currency (a payment in another one never pays or underpays:
    `_decide` fails the order)."""
    crypto = _crypto_sent(ipn)
    if target == "paid":
        details = {"amount": _cents(total)}
        await queue_notice(conn, order_id, "payment_received", details=details | crypto)
    elif target == "underpaid":
        received = paid_in_fiat(ipn)
        details = {}
        if received is not None:
            # Received rounds down and missing is the rest, so the two add up to the total.
            details["received"] = _cents(received)
            details["missing"] = str(max(Decimal(0), total - Decimal(details["received"])))
        await queue_notice(conn, order_id, "underpaid", details=details | crypto)


def _crypto_sent(ipn: Ipn) -> dict[str, str]:
    if ipn.actually_paid is None or not ipn.pay_currency:
        return {}
    return {"paid": f"{ipn.actually_paid.normalize():f} {ipn.pay_currency.upper()}"}


def _cents(amount: Decimal) -> str:
    return str(amount.quantize(Decimal("0.01"), rounding=ROUND_DOWN))


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
        missing = _missing_evidence(ipn)
        if missing:
            # A final status without the amount behind it is no proof of payment.
            reason = f"payment {ipn.payment_id} {status} proves no amount ({', '.join(missing)})"
            return "underpaid", reason, True
        if not covers(ipn, total, policy.tolerance):
            return "underpaid", _shortfall(ipn, total, currency), True
        return "paid", f"payment {ipn.payment_id} {status}", False
    if status in IN_PROGRESS:
        return "confirming", None, False
    return None  # waiting: nothing to do yet


def _shortfall(ipn: Ipn, total: Decimal, currency: str) -> str:
    paid = paid_in_fiat(ipn)
    shown = "unknown" if paid is None else f"{paid.quantize(Decimal('0.01'))}"
    return f"paid {shown} of {total} {currency}"


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


# --- reconciliation: the second way a payment is heard of ---------------------------------


async def reconcile(res: Resources) -> dict[str, int]:
    """One pass of the reconciler: push on paid orders that stalled, expire abandoned
    orders, and re-read unfinished payments from NOWPayments (applied like IPNs)."""
    minutes = res.settings.reconcile_after_minutes
    async with res.pool.connection() as conn, conn.transaction():
        await set_actor(conn, "reconciler")
        requeued = await requeue_stuck_orders(conn, minutes)
        # The reason the order_events trigger records for the orders this pass expires.
        await set_actor(conn, "reconciler", "no payment arrived in time")
        expired = await orders.expire_abandoned(conn)
    rechecked = await recheck_payments(res, minutes) if res.nowpayments is not None else 0
    return {"requeued": requeued, "expired": expired, "payments_rechecked": rechecked}


async def recheck_payments(res: Resources, minutes: int) -> int:
    """Ask NOWPayments about payments not final and not heard of for `minutes`, and apply
    each answer exactly like an IPN (so a later IPN saying the same is a duplicate)."""
    async with res.pool.connection() as conn:
        payment_ids = await repository.stale_payments(conn, minutes, BATCH)
    policy = PaymentPolicy.of(res.settings)
    for payment_id in payment_ids:
        try:
            status = await res.nowpayments_client.get_payment(payment_id)
            # Judged as an IPN body is: an answer no IPN may carry (a negative amount, say)
            # is refused, not applied, as the webhook refuses it with a 400.
            ipn = Ipn.from_parsed(status.model_dump(mode="json"))
        except (NowPaymentsError, MalformedIpn) as exc:
            # Touched all the same: a payment NOWPayments keeps refusing must not stay the
            # oldest in every batch and starve the others; it is asked again next period.
            async with res.pool.connection() as conn:
                await repository.touch_payment(conn, payment_id)
            code = exc.code if isinstance(exc, NowPaymentsError) else str(exc)
            log.warning("reconcile.payment_check_failed", payment_id=payment_id, code=code)
            continue
        async with res.pool.connection() as conn, conn.transaction():
            await set_actor(conn, "reconciler", f"NOWPayments says {ipn.payment_status}")
            result = await apply_ipn(
                conn, ipn, raw_body=status.model_dump_json(), signature_variant="api", policy=policy
            )
            await repository.touch_payment(conn, payment_id)
        log.info("reconcile.payment_checked", payment_id=payment_id, outcome=result.outcome)
    return len(payment_ids)
