"""NOWPayments objects as BitLoot sees them, whatever types the API happened to send.

The API is inconsistent (docs/external-apis.md 2.5): ids arrive as numbers or strings,
amounts as numbers or strings, currencies in any case. These models normalise once, at
the boundary: ids become ``str``, amounts ``Decimal`` (never through ``float``),
currencies lower case, timestamps timezone-aware UTC. Unknown fields are ignored.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from bitloot.nowpayments.signature import MalformedIpn, RawNumber
from bitloot.text import Storable, StorableText

__all__ = [
    "PAYMENT_STATUSES",
    "TERMINAL_STATUSES",
    "Invoice",
    "Ipn",
    "IpnFee",
    "PaymentStatus",
    "PaymentStatusValue",
    "invalid_fields",
]

PaymentStatusValue = Literal[
    "waiting",
    "confirming",
    "confirmed",
    "sending",
    "partially_paid",
    "finished",
    "failed",
    "refunded",
    "expired",
]
PAYMENT_STATUSES: Final[tuple[PaymentStatusValue, ...]] = get_args(PaymentStatusValue)
# Terminal per the docs (2.6). partially_paid is left out on purpose: it is only
# "effectively" final, and more funds arrive as re-deposit child payments.
TERMINAL_STATUSES: Final[frozenset[PaymentStatusValue]] = frozenset(
    {"finished", "failed", "refunded", "expired"}
)


def _to_id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):  # bool is an int subclass; True is not an id
        raise ValueError("an id must be an integer or a string")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, RawNumber):
        # 5077125051 is an id; 5.077125051e9 is a different text for the same thing.
        if not value.isdigit():
            raise ValueError("a numeric id must be a plain non-negative integer")
        return str(value)
    if isinstance(value, str):
        return value.strip() or None
    raise ValueError("an id must be an integer or a string")


def _to_id_list(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise ValueError("expected a list of ids")
    ids = [_to_id(item) for item in value]
    return [i for i in ids if i is not None]


def _to_decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("an amount must be a number or a numeric string")
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, str):  # RawNumber included: its text goes straight to Decimal
        text = value.strip()
        if not text:
            return None
        try:
            amount = Decimal(text)
        except InvalidOperation as exc:
            raise ValueError("an amount must be a number or a numeric string") from exc
    elif isinstance(value, float):
        # Only reached when a caller already holds a float; repr() is the shortest text
        # that round-trips, unlike Decimal(float) which exposes the binary expansion.
        amount = Decimal(repr(value))
    else:
        raise ValueError("an amount must be a number or a numeric string")
    if not amount.is_finite():
        raise ValueError("an amount must be finite")
    return amount


def _to_currency(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("a currency must be a string")
    return value.strip().lower() or None


def _to_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("expected a string")
    if isinstance(value, int | str):  # order_id may come back as a number
        return str(value)  # str() also turns a RawNumber into a plain str
    raise ValueError("expected a string")


_OUT_OF_RANGE = "the time is out of range (years 1 to 9999)"


def _epoch_ms_to_utc(ms: int) -> datetime:
    seconds, millis = divmod(ms, 1000)
    try:
        return datetime.fromtimestamp(seconds, UTC) + timedelta(milliseconds=millis)
    except (OverflowError, OSError, ValueError):
        # 10**400 ms overflows time_t (OverflowError), some platforms refuse what fits in
        # it but not in their calendar (OSError), and year 10000 is no datetime at all.
        raise ValueError(_OUT_OF_RANGE) from None


def _to_utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("expected epoch milliseconds or an ISO-8601 timestamp")
    if isinstance(value, int):
        return _epoch_ms_to_utc(value)
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text.isdigit():  # IPN updated_at is epoch milliseconds (docs 2.7)
            return _epoch_ms_to_utc(int(text))
        try:
            moment = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError("expected epoch milliseconds or an ISO-8601 timestamp") from exc
    else:
        raise ValueError("expected epoch milliseconds or an ISO-8601 timestamp")
    if moment.tzinfo is None:
        # (inferred) NOWPayments writes UTC with a "Z"; a bare timestamp is read as UTC too.
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before the first UTC datetime
        raise ValueError(_OUT_OF_RANGE) from None


def _to_status(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


# Text is what PostgreSQL can store (no NUL, no lone surrogate), and an id, being indexed,
# is short too: an index refuses text much over 2 kB, and NOWPayments ids are short numbers.
MAX_ID_CHARS = 200
_StorableId = Storable[Annotated[str, StringConstraints(max_length=MAX_ID_CHARS)]]

OptionalId = Annotated[_StorableId | None, BeforeValidator(_to_id)]
RequiredId = Annotated[_StorableId, BeforeValidator(_to_id)]
IdList = Annotated[list[_StorableId], BeforeValidator(_to_id_list)]
OptionalAmount = Annotated[Decimal | None, BeforeValidator(_to_decimal)]
RequiredAmount = Annotated[Decimal, BeforeValidator(_to_decimal)]
OptionalCurrency = Annotated[StorableText | None, BeforeValidator(_to_currency)]
RequiredCurrency = Annotated[StorableText, BeforeValidator(_to_currency)]
OptionalText = Annotated[StorableText | None, BeforeValidator(_to_text)]
OptionalTextId = Annotated[_StorableId | None, BeforeValidator(_to_text)]
RequiredText = Annotated[StorableText, BeforeValidator(_to_text)]
UtcDatetime = Annotated[datetime | None, BeforeValidator(_to_utc)]
Status = Annotated[PaymentStatusValue, BeforeValidator(_to_status)]


def invalid_fields(exc: ValidationError) -> str:
    """The dotted names of the fields a validation rejected, without their values (nor
    list positions: `payment_extra_ids`, not `payment_extra_ids.3`)."""
    names = {
        ".".join(str(part) for part in err["loc"] if not isinstance(part, int)) or "body"
        for err in exc.errors()
    }
    return ", ".join(sorted(names))


# The amount columns hold less than 10^18; below 10^-30 an amount is noise that would only
# make the arithmetic on it overflow.
SMALLEST_AMOUNT, AMOUNT_LIMIT = Decimal("1e-30"), Decimal("1e18")


def _storable_amount(value: Any) -> Any:
    """An IPN amount the database can store and compute with (zero is fine)."""
    if isinstance(value, Decimal) and value and not SMALLEST_AMOUNT <= abs(value) < AMOUNT_LIMIT:
        raise ValueError("amount out of range")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class Invoice(_Model):
    """A hosted payment link, as returned by ``POST /invoice``."""

    id: RequiredId
    invoice_url: RequiredText
    order_id: OptionalText = None
    order_description: OptionalText = None
    price_amount: RequiredAmount
    price_currency: RequiredCurrency
    pay_currency: OptionalCurrency = None
    token_id: OptionalText = None
    ipn_callback_url: OptionalText = None
    success_url: OptionalText = None
    cancel_url: OptionalText = None
    partially_paid_url: OptionalText = None
    payout_currency: OptionalCurrency = None
    is_fixed_rate: bool | None = None
    is_fee_paid_by_user: bool | None = None
    created_at: UtcDatetime = None
    updated_at: UtcDatetime = None


class _PaymentFields(_Model):
    payment_id: RequiredId
    parent_payment_id: OptionalId = None
    invoice_id: OptionalId = None
    purchase_id: OptionalId = None
    payment_status: Status
    pay_address: OptionalText = None
    payin_extra_id: OptionalText = None
    price_amount: OptionalAmount = None
    price_currency: OptionalCurrency = None
    pay_amount: OptionalAmount = None
    actually_paid: OptionalAmount = None
    pay_currency: OptionalCurrency = None
    order_id: OptionalTextId = None
    order_description: OptionalText = None
    outcome_amount: OptionalAmount = None
    outcome_currency: OptionalCurrency = None
    payment_extra_ids: IdList = Field(default_factory=list)
    updated_at: UtcDatetime = None


class PaymentStatus(_PaymentFields):
    """A payment as returned by ``GET /payment/{id}``."""

    payin_hash: OptionalText = None
    payout_hash: OptionalText = None
    type: OptionalText = None
    created_at: UtcDatetime = None


class IpnFee(_Model):
    """The nested ``fee`` object of an IPN (values seen both as numbers and strings)."""

    currency: OptionalCurrency = None
    deposit_fee: OptionalAmount = Field(default=None, alias="depositFee")
    withdrawal_fee: OptionalAmount = Field(default=None, alias="withdrawalFee")
    service_fee: OptionalAmount = Field(default=None, alias="serviceFee")

    _amounts_in_range = field_validator("*")(_storable_amount)


class Ipn(_PaymentFields):
    """A payment IPN body, normalised. Build it with `Ipn.from_parsed`."""

    actually_paid_at_fiat: OptionalAmount = None
    fee: IpnFee | None = None

    _amounts_in_range = field_validator("*")(_storable_amount)

    @field_validator(
        "price_amount", "pay_amount", "actually_paid", "actually_paid_at_fiat", "outcome_amount"
    )
    @classmethod
    def _not_negative(cls, value: Decimal | None) -> Decimal | None:
        """Money asked, sent or received is never negative: such a body is malformed (400)."""
        if value is not None and value < 0:
            raise ValueError("an amount must not be negative")
        return value

    @classmethod
    def from_parsed(cls, obj: Any) -> Ipn:
        """Build from `parse_ipn_json` output; raise `MalformedIpn` when it does not fit.

        The error names the offending fields, never their values.
        """
        if not isinstance(obj, dict):
            raise MalformedIpn("IPN body is not a JSON object")
        try:
            return cls.model_validate(obj)
        except ValidationError as exc:
            raise MalformedIpn(f"IPN body has invalid fields: {invalid_fields(exc)}") from None
