"""When is an order paid? Applying a verified NOWPayments payment report (an IPN, or the
reconciler's read of the API): one call of the database function `bitloot_apply_ipn`
(sql/migrations/0020_ipn_function.sql), which is the one home of the rules.

In the caller's transaction and in one round trip, the function stores the report once
(a copy is a duplicate), locks the order, moves the payment forward, decides what the report
leads to (`bitloot_ipn_decision`: a final payment pays the order only when its amounts, in
the order's currency, cover the total within `BITLOOT_PAYMENT_TOLERANCE`; less or no proof
is `underpaid`, another currency `failed`; `failed`, `expired` and `refunded` end the order
so; re-deposits and reports for an already underpaid order never move it, a human looks;
nothing moves backwards), moves the order, queues `fulfill_order` and the customer's notice,
and records the outcome. The orders trigger still refuses `paid` without
`bitloot_payment_evidence` (migration 0012): the guard that even psql cannot pass.
Python keeps what only Python can do: parsing, the signature, the HTTP answer, the log.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg
import structlog

from bitloot.db.connect import set_actor
from bitloot.fulfillment.service import requeue_stuck_orders
from bitloot.inbox import service as inbox
from bitloot.inbox.service import EventOutcome
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

log = structlog.get_logger(__name__)
BATCH = 100


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


async def apply_ipn(
    conn: psycopg.AsyncConnection[Any],
    ipn: Ipn,
    *,
    raw_body: str,
    signature_variant: str,
    actor: str | None = None,
    actor_reason: str | None = None,
) -> EventOutcome:
    """Store the report once and apply it (`bitloot_apply_ipn`); a duplicate changes
    nothing and says so. `actor`, when given, names who acts for the transaction's
    order_events (as `set_actor` would), in the same round trip."""
    return await repository.apply_ipn(
        conn,
        {
            "dedup_key": dedup_key(ipn),
            "raw_body": raw_body,
            "signature_variant": signature_variant,
            "payment_id": ipn.payment_id,
            "payment_status": ipn.payment_status,
            "order_id": inbox.order_uuid(ipn.order_id),
            "invoice_id": ipn.invoice_id,
            "parent_payment_id": ipn.parent_payment_id,
            "price_amount": ipn.price_amount,
            "price_currency": ipn.price_currency,
            "pay_amount": ipn.pay_amount,
            "pay_currency": ipn.pay_currency,
            "actually_paid": ipn.actually_paid,
            "actually_paid_at_fiat": ipn.actually_paid_at_fiat,
            "outcome_amount": ipn.outcome_amount,
            "outcome_currency": ipn.outcome_currency,
            "provider_updated_at": ipn.updated_at,
            "actor": actor,
            "actor_reason": actor_reason,
        },
    )


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
            result = await apply_ipn(
                conn,
                ipn,
                raw_body=status.model_dump_json(),
                signature_variant="api",
                actor="reconciler",
                actor_reason=f"NOWPayments says {ipn.payment_status}",
            )
            await repository.touch_payment(conn, payment_id)
        log.info("reconcile.payment_checked", payment_id=payment_id, outcome=result.outcome)
    return len(payment_ids)
