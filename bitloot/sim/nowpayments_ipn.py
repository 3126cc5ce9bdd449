"""IPNs of the NOWPayments simulator: the body, the signature, delivery with retries,
and the drive that walks a payment through statuses with the requested faults.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, get_args

import aiohttp
import structlog

from bitloot.nowpayments.models import PaymentStatusValue
from bitloot.nowpayments.signature import dump_json, sign_ipn
from bitloot.sim.nowpayments_state import (
    TINY_PAY_AMOUNT,
    DeliveryAttempt,
    IpnRecord,
    SimPayment,
    SimState,
    crypto_amount,
    epoch_ms,
    js_number,
    now,
)

log = structlog.get_logger(__name__)

STATUSES: frozenset[str] = frozenset(get_args(PaymentStatusValue))
DEFAULT_STATUSES = ("waiting", "confirming", "confirmed", "sending", "finished")
NON_ASCII_SUFFIX = " — Clé «Édition Spéciale» für Spieler 🎮"
_UNPAID = frozenset({"waiting", "expired"})
_PAID_OUT = frozenset({"sending", "finished"})
_REDEPOSIT_SHARE = Decimal("0.1")


@dataclass
class Redeposit:
    """A later deposit to the same address: a child payment (docs 2.7, re-deposits)."""

    status: str = "partially_paid"  # "partially_paid or finished according to settings"
    actually_paid: Decimal | None = None


@dataclass
class Faults:
    """What to get wrong on purpose; every field off by default."""

    duplicate: int = 0
    reorder: bool = False
    tiny_amounts: bool = False
    non_ascii: bool = False
    fee_object: bool = False
    extra_ids: bool = False
    redeposit: Redeposit | None = None


@dataclass
class DrivePlan:
    """How a control call wants a payment driven."""

    statuses: list[str]
    actually_paid: Decimal | None
    faults: Faults
    interval_ms: int
    retry_delays_ms: list[int]
    wait: bool


def _decimal(value: Any, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        raise ValueError(f"{name} must be a number or a numeric string")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{name} must be a number or a numeric string") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{name} must be a non-negative number")
    return amount


def _int(value: Any, name: str, *, low: int = 0, high: int = 60_000) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}")
    return value


def _redeposit(value: Any) -> Redeposit | None:
    if value in (None, False):
        return None
    if value is True:
        return Redeposit()
    if not isinstance(value, dict):
        raise ValueError("faults.redeposit must be a boolean or an object")
    status = value.get("status", "partially_paid")
    if status not in STATUSES:
        raise ValueError("faults.redeposit.status is not a payment status")
    paid = value.get("actually_paid")
    return Redeposit(status, None if paid is None else _decimal(paid, "actually_paid"))


def _faults(value: Any) -> Faults:
    if value is None:
        return Faults()
    if not isinstance(value, dict):
        raise ValueError("faults must be an object")
    return Faults(
        duplicate=_int(value.get("duplicate", 0), "faults.duplicate", high=20),
        reorder=value.get("reorder") is True,
        tiny_amounts=value.get("tiny_amounts") is True,
        non_ascii=value.get("non_ascii") is True,
        fee_object=value.get("fee_object") is True,
        extra_ids=value.get("extra_ids") is True,
        redeposit=_redeposit(value.get("redeposit")),
    )


def parse_plan(body: dict[str, Any], default_delays_ms: list[int]) -> DrivePlan:
    """Read a control-call body; raise ValueError with a message naming the bad field."""
    statuses = body.get("statuses", list(DEFAULT_STATUSES))
    if not isinstance(statuses, list) or not statuses or not set(statuses) <= STATUSES:
        raise ValueError(f"statuses must be a non-empty list of {sorted(STATUSES)}")
    delays = body.get("retry_delays_ms", default_delays_ms)
    if not isinstance(delays, list):
        raise ValueError("retry_delays_ms must be a list of integers")
    paid = body.get("actually_paid")
    return DrivePlan(
        statuses=list(statuses),
        actually_paid=None if paid is None else _decimal(paid, "actually_paid"),
        faults=_faults(body.get("faults")),
        interval_ms=_int(body.get("interval_ms", 0), "interval_ms"),
        retry_delays_ms=[_int(d, "retry_delays_ms[]") for d in delays][:10],
        wait=body.get("wait") is True,
    )


def apply_payment_faults(payment: SimPayment, faults: Faults) -> None:
    """Change the payment's fields as the faults ask, before any IPN is sent."""
    if faults.tiny_amounts:
        payment.pay_amount = TINY_PAY_AMOUNT
    if faults.non_ascii:
        payment.order_description = (payment.order_description or "") + NON_ASCII_SUFFIX
    if faults.extra_ids:
        payment.payment_extra_ids = [payment.payment_id + 436_214_102, payment.payment_id + 1]
    payment.with_fee = faults.fee_object


def ipn_body(p: SimPayment) -> dict[str, Any]:
    """The IPN body in the key order of the official example (docs 2.7)."""

    def optional_id(value: int | None) -> Any:
        return None if value is None else js_number(value)

    body: dict[str, Any] = {
        "payment_id": js_number(p.payment_id),
        "parent_payment_id": optional_id(p.parent_payment_id),
        "invoice_id": optional_id(p.invoice_id),
        "payment_status": p.payment_status,
        "pay_address": p.pay_address,
        "payin_extra_id": None,
        "price_amount": js_number(p.price_amount),
        "price_currency": p.price_currency,
        "pay_amount": js_number(p.pay_amount),
        "actually_paid": js_number(p.actually_paid),
        "actually_paid_at_fiat": js_number(p.actually_paid_at_fiat),
        "pay_currency": p.pay_currency,
        "order_id": p.order_id,
        "order_description": p.order_description,
        # (inferred) a string here, a number in GET /payment: the docs show both types.
        "purchase_id": str(p.purchase_id),
        "outcome_amount": js_number(p.outcome_amount),
        "outcome_currency": p.pay_currency,
        "payment_extra_ids": (
            [js_number(i) for i in p.payment_extra_ids] if p.payment_extra_ids else None
        ),
    }
    if p.with_fee:
        # Values as strings, as in the Dec 2025 sample; the split itself is invented.
        body["fee"] = {
            "currency": p.pay_currency,
            "depositFee": str(js_number(crypto_amount(p.actually_paid * Decimal("0.001")))),
            "withdrawalFee": "0",
            "serviceFee": str(js_number(crypto_amount(p.actually_paid * Decimal("0.004")))),
        }
    body["updated_at"] = js_number(epoch_ms(p.updated_at))  # epoch ms, per the sample
    return body


def apply_status(payment: SimPayment, status: str, paid: Decimal) -> None:
    """Move the payment to ``status``, filling what that status implies (inferred)."""
    payment.payment_status = status
    payment.updated_at = now()
    payment.actually_paid = Decimal(0) if status in _UNPAID else paid
    if status not in _UNPAID and payment.payin_hash is None:
        payment.payin_hash = hashlib.sha256(f"in:{payment.payment_id}".encode()).hexdigest()
    if status in _PAID_OUT and payment.payout_hash is None:
        payment.payout_hash = hashlib.sha256(f"out:{payment.payment_id}".encode()).hexdigest()


def _records(state: SimState, drive_id: int, payment: SimPayment, copies: int) -> list[IpnRecord]:
    body = dump_json(ipn_body(payment))
    # Signed from the text itself, so the signature covers the numbers exactly as sent.
    signature = sign_ipn(body.encode("utf-8"), state.ipn_secret)
    records = [
        IpnRecord(
            id=state.new_ipn_id(),
            drive_id=drive_id,
            payment_id=payment.payment_id,
            payment_status=payment.payment_status,
            url=payment.ipn_callback_url or "",
            body=body,
            signature=signature,
            copy=copy,
        )
        for copy in range(copies)
    ]
    state.ipns.extend(records)
    return records


async def _post_once(
    session: aiohttp.ClientSession, record: IpnRecord, timeout_s: float
) -> DeliveryAttempt:
    headers = {"Content-Type": "application/json", "x-nowpayments-sig": record.signature}
    started = time.monotonic()
    status: int | None = None
    error: str | None = None
    try:
        async with session.post(
            record.url,
            data=record.body.encode("utf-8"),
            headers=headers,
            # The real notifier gives up after 3000 ms (docs 2.7); the sim's is configurable.
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as resp:
            await resp.read()
            status = resp.status
    except TimeoutError:
        error = "timeout"
    except aiohttp.ClientError as exc:
        error = type(exc).__name__
    elapsed_ms = int((time.monotonic() - started) * 1000)
    return DeliveryAttempt(status=status, error=error, elapsed_ms=elapsed_ms)


async def deliver(state: SimState, record: IpnRecord, retry_delays_ms: list[int]) -> None:
    """POST one IPN; after a non-2xx or a timeout, retry on the schedule (inferred)."""
    for delay_ms in [0, *retry_delays_ms]:
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        attempt = await _post_once(state.session(), record, state.ipn_timeout_s)
        record.attempts.append(attempt)
        log.info(
            "nowpayments_sim.ipn_attempt",
            payment_id=record.payment_id,
            payment_status=record.payment_status,
            attempt=len(record.attempts),
            status=attempt.status,
            error=attempt.error,
        )
        if record.delivered:
            break
    record.done = True


def _default_paid(payment: SimPayment, plan: DrivePlan) -> Decimal:
    if plan.actually_paid is not None:
        return plan.actually_paid
    if "partially_paid" in plan.statuses:
        return crypto_amount(payment.pay_amount / 2)  # a full amount would not be partial
    return payment.pay_amount


def _child_payment(state: SimState, parent: SimPayment, redeposit: Redeposit) -> SimPayment:
    payment_id, purchase_id = state.new_payment_ids()
    paid = redeposit.actually_paid or crypto_amount(parent.pay_amount * _REDEPOSIT_SHARE)
    ratio = paid / parent.pay_amount if parent.pay_amount else Decimal(0)
    child = SimPayment(
        payment_id=payment_id,
        purchase_id=purchase_id,
        invoice_id=parent.invoice_id,
        parent_payment_id=parent.payment_id,
        pay_address=parent.pay_address,  # a re-deposit goes to the same address
        price_amount=(parent.price_amount * ratio).quantize(Decimal("0.01")),
        price_currency=parent.price_currency,
        pay_amount=paid,
        pay_currency=parent.pay_currency,
        order_id=parent.order_id,
        order_description=parent.order_description,
        ipn_callback_url=parent.ipn_callback_url,
        with_fee=parent.with_fee,
    )
    state.payments[payment_id] = child
    return child


async def drive(state: SimState, drive_id: int, payment: SimPayment, plan: DrivePlan) -> None:
    """Walk the payment through the plan's statuses, one IPN (plus duplicates) per change.

    IPNs go out one after another, each with its retries, so without ``reorder`` the
    receiver sees them in status order. ``reorder`` holds them back and sends them in
    reverse order at the end (deterministic, so tests can rely on it).
    """
    held: list[IpnRecord] = []
    copies = 1 + plan.faults.duplicate

    async def emit(p: SimPayment) -> None:
        records = _records(state, drive_id, p, copies)
        if plan.faults.reorder:
            held.extend(records)
            return
        for record in records:
            await deliver(state, record, plan.retry_delays_ms)

    paid = _default_paid(payment, plan)
    for index, status in enumerate(plan.statuses):
        if index and plan.interval_ms:
            await asyncio.sleep(plan.interval_ms / 1000)
        apply_status(payment, status, paid)
        await emit(payment)
    if plan.faults.redeposit is not None:
        child = _child_payment(state, payment, plan.faults.redeposit)
        apply_status(child, plan.faults.redeposit.status, child.pay_amount)
        await emit(child)
    for record in reversed(held):
        await deliver(state, record, plan.retry_delays_ms)
