"""The NOWPayments simulator's in-memory state and the JSON shapes it answers with.

Shapes and key order follow docs/external-apis.md 2.3 to 2.7. Numbers are `RawNumber`
texts formatted the way JavaScript prints them (the real service is most likely Node),
so a tiny amount goes on the wire as ``0.0000635``, never ``6.35e-05``.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
from aiohttp import web

from bitloot.nowpayments.signature import RawNumber

# (inferred) Fake exchange rates: units of pay currency per one unit of fiat.
_RATES: dict[str, Decimal] = {
    "btc": Decimal("0.000016"),
    "eth": Decimal("0.00042"),
    "ltc": Decimal("0.012"),
    "xmr": Decimal("0.0065"),
    "usdttrc20": Decimal("1.08"),
}
_CRYPTO_STEP = Decimal("0.00000001")
# (inferred) What NOWPayments keeps from a payment before paying out.
_OUTCOME_SHARE = Decimal("0.995")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TINY_PAY_AMOUNT = Decimal("0.0000635")  # a real IPN sample carried this amount


def js_number(value: Decimal | int) -> RawNumber:
    """The text JavaScript's Number#toString gives for this value (ECMA-262 7.1.12.1)."""
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError("JSON has no text for a non-finite number")
    if number.is_zero():
        return RawNumber("0")
    sign, digit_tuple, exponent = number.normalize().as_tuple()
    assert isinstance(exponent, int)  # finite, checked above
    digits = "".join(map(str, digit_tuple))
    k = len(digits)
    n = k + exponent  # value = 0.digits * 10**n
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
        text = f"{mantissa}e{'+' if n - 1 > 0 else '-'}{abs(n - 1)}"
    return RawNumber("-" + text if sign else text)


def crypto_amount(value: Decimal) -> Decimal:
    """Round to 8 decimals (satoshi) and drop trailing zeros."""
    return value.quantize(_CRYPTO_STEP).normalize()


def pay_amount_for(price_amount: Decimal, pay_currency: str) -> Decimal:
    """What the customer must send for this fiat price, at the simulator's fixed rates."""
    return crypto_amount(price_amount * _RATES.get(pay_currency, Decimal(1)))


def iso_ms(moment: datetime) -> str:
    """ISO-8601 with milliseconds and ``Z``, as the API writes ``created_at``."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def epoch_ms(moment: datetime) -> int:
    """Epoch milliseconds, as IPN ``updated_at`` is written."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def now() -> datetime:
    """The current UTC time (one place, so the clock could be faked later)."""
    return datetime.now(UTC)


@dataclass
class SimInvoice:
    """An invoice created through ``POST /v1/invoice``."""

    id: int
    token_id: str
    price_amount: Decimal
    price_currency: str
    pay_currency: str | None
    order_id: str | None
    order_description: str | None
    ipn_callback_url: str | None
    success_url: str | None
    cancel_url: str | None
    partially_paid_url: str | None
    is_fixed_rate: bool
    is_fee_paid_by_user: bool
    invoice_url: str
    created_at: datetime = field(default_factory=now)


@dataclass
class SimPayment:
    """A payment; its fields change as the control API drives it through statuses."""

    payment_id: int
    purchase_id: int
    invoice_id: int | None
    parent_payment_id: int | None
    pay_address: str
    price_amount: Decimal
    price_currency: str
    pay_amount: Decimal
    pay_currency: str
    order_id: str | None
    order_description: str | None
    ipn_callback_url: str | None
    payment_status: str = "waiting"
    actually_paid: Decimal = Decimal(0)
    payment_extra_ids: list[int] | None = None
    with_fee: bool = False
    payin_hash: str | None = None
    payout_hash: str | None = None
    created_at: datetime = field(default_factory=now)
    updated_at: datetime = field(default_factory=now)

    @property
    def outcome_amount(self) -> Decimal:
        """What the merchant receives: of what was paid, or of what is expected so far."""
        basis = self.actually_paid if self.actually_paid else self.pay_amount
        return crypto_amount(basis * _OUTCOME_SHARE)

    @property
    def actually_paid_at_fiat(self) -> Decimal:
        """The paid amount converted back to the price currency."""
        if not self.pay_amount:
            return Decimal(0)
        return crypto_amount(self.price_amount * self.actually_paid / self.pay_amount)


@dataclass
class DeliveryAttempt:
    """One POST of an IPN: the HTTP status, or why there was none."""

    status: int | None
    error: str | None
    elapsed_ms: int


@dataclass
class IpnRecord:
    """One IPN as sent (a duplicate is its own record with the same body)."""

    id: int
    drive_id: int  # the payment the control call created or drove
    payment_id: int
    payment_status: str
    url: str
    body: str
    signature: str
    copy: int  # 0 for the first send, 1.. for injected duplicates
    attempts: list[DeliveryAttempt] = field(default_factory=list)
    done: bool = False

    @property
    def delivered(self) -> bool:
        """True when some attempt got a 2xx."""
        return any(a.status is not None and 200 <= a.status < 300 for a in self.attempts)

    def as_json(self) -> dict[str, Any]:
        """The record as the control API lists it."""
        last = self.attempts[-1].status if self.attempts else None
        return {
            "id": self.id,
            "drive_id": self.drive_id,
            "payment_id": self.payment_id,
            "payment_status": self.payment_status,
            "copy": self.copy,
            "url": self.url,
            "body": self.body,
            "signature": self.signature,
            "response_code": last,
            "delivered": self.delivered,
            "done": self.done,
            "attempts": [
                {"status": a.status, "error": a.error, "elapsed_ms": a.elapsed_ms}
                for a in self.attempts
            ],
        }


class SimState:
    """Everything the simulator remembers; one per sub-application."""

    def __init__(
        self,
        *,
        api_key: str,
        ipn_secret: str,
        public_base_url: str,
        retry_delays_ms: Sequence[int],
        ipn_timeout_s: float,
    ) -> None:
        self._api_key = api_key
        self._ipn_secret = ipn_secret
        self.public_base_url = public_base_url.rstrip("/")
        self.retry_delays_ms = list(retry_delays_ms)
        self.ipn_timeout_s = ipn_timeout_s
        self.invoices: dict[int, SimInvoice] = {}
        self.payments: dict[int, SimPayment] = {}
        self.ipns: list[IpnRecord] = []
        self.drives: dict[int, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._reset_counters()

    def __repr__(self) -> str:
        return f"SimState(public_base_url={self.public_base_url!r})"

    def _reset_counters(self) -> None:
        # Ids shaped like the official examples' (10 digits), starting from the clock so a
        # restarted simulator never hands out an id that an earlier run already used: the
        # real ids are globally unique, and BitLoot's database relies on that.
        offset = time.time_ns() // 1000 % 10**8
        self._next_invoice = 4_400_000_000 + offset
        self._next_payment = 5_000_000_000 + offset
        self._next_purchase = 6_000_000_000 + offset
        self._next_ipn = 1

    @property
    def api_key(self) -> str:
        """The key callers must send in ``x-api-key``."""
        return self._api_key

    @property
    def ipn_secret(self) -> str:
        """The key IPNs are signed with."""
        return self._ipn_secret

    def new_invoice_id(self) -> int:
        """A fresh invoice id."""
        self._next_invoice += 1
        return self._next_invoice

    def new_payment_ids(self) -> tuple[int, int]:
        """A fresh (payment_id, purchase_id)."""
        self._next_payment += 1
        self._next_purchase += 1
        return self._next_payment, self._next_purchase

    def new_ipn_id(self) -> int:
        """A fresh IPN record id."""
        self._next_ipn += 1
        return self._next_ipn - 1

    def invoice_url(self, invoice_id: int) -> str:
        """The hosted page; the sim is mounted under ``/nowpayments``."""
        return f"{self.public_base_url}/nowpayments/invoice/{invoice_id}"

    def session(self) -> aiohttp.ClientSession:
        """The HTTP session IPNs are posted with, created on first use inside the loop."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def stop_drives(self) -> None:
        """Cancel every running drive and wait until they have stopped."""
        tasks = list(self.drives.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def reset(self) -> None:
        """Forget everything: invoices, payments, IPNs, ids."""
        await self.stop_drives()
        self.invoices.clear()
        self.payments.clear()
        self.ipns.clear()
        self.drives.clear()
        self._reset_counters()

    async def close(self) -> None:
        """Stop drives and close the HTTP session."""
        await self.stop_drives()
        if self._session is not None:
            await self._session.close()
            self._session = None


def fake_address(payment_id: int, pay_currency: str) -> str:
    """A deposit address that looks plausible and is stable per payment."""
    digest = hashlib.sha256(f"{pay_currency}:{payment_id}".encode()).hexdigest()
    return ("bc1q" + digest[:38]) if pay_currency == "btc" else ("0x" + digest[:40])


def new_payment(
    state: SimState,
    *,
    price_amount: Decimal,
    price_currency: str,
    pay_currency: str,
    pay_amount: Decimal | None,
    invoice: SimInvoice | None,
    order_id: str | None,
    order_description: str | None,
    ipn_callback_url: str | None,
) -> SimPayment:
    """Create and remember a payment in status ``waiting``."""
    payment_id, purchase_id = state.new_payment_ids()
    payment = SimPayment(
        payment_id=payment_id,
        purchase_id=purchase_id,
        invoice_id=invoice.id if invoice else None,
        parent_payment_id=None,
        pay_address=fake_address(payment_id, pay_currency),
        price_amount=price_amount,
        price_currency=price_currency,
        pay_amount=pay_amount or pay_amount_for(price_amount, pay_currency),
        pay_currency=pay_currency,
        order_id=order_id,
        order_description=order_description,
        ipn_callback_url=ipn_callback_url,
    )
    state.payments[payment_id] = payment
    return payment


def payment_from_invoice(
    state: SimState, inv: SimInvoice, pay_currency: str, price_currency: str | None = None
) -> SimPayment:
    """A payment made through an invoice (``price_currency`` overrides, for tests)."""
    return new_payment(
        state,
        price_amount=inv.price_amount,
        price_currency=price_currency or inv.price_currency,
        pay_currency=pay_currency,
        pay_amount=None,
        invoice=inv,
        order_id=inv.order_id,
        order_description=inv.order_description,
        ipn_callback_url=inv.ipn_callback_url,
    )


SIM_STATE = web.AppKey("nowpayments_sim_state", SimState)
