"""What applying a webhook did: the closed list of `webhook_events.outcome` values.

Every value has one line of meaning and the provider it belongs to (None: both). The
database holds the same list in `webhook_outcomes` (sql/migrations/0005_webhook_outcomes.sql)
and `webhook_events.outcome` references it, so no other value can be stored;
tests/inbox/test_outcomes.py keeps the two equal. Adding a value means adding it to both.

The values that depend on a status are listed in full (one member per status the schema
allows) and looked up in the tables below, never built from the status text.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final, Literal, Self, TypeVar

Provider = Literal["nowpayments", "kinguin"]

NP: Final = "nowpayments"
KG: Final = "kinguin"
K = TypeVar("K")


class Outcome(StrEnum):
    """One outcome: its value (the stored text), provider (None: both) and meaning."""

    _value_: str
    provider: Provider | None
    meaning: str

    def __new__(cls, value: str, provider: Provider | None, meaning: str) -> Self:
        member = str.__new__(cls, value)
        member._value_ = value
        member.provider = provider
        member.meaning = meaning
        return member

    @classmethod
    def stored(cls, value: str) -> Outcome:
        """The member whose stored text is `value` (what a database function returned)."""
        member = cls._value2member_map_.get(value)
        if not isinstance(member, Outcome):
            raise ValueError(f"no webhook outcome {value!r}")
        return member

    @classmethod
    def redeposit(cls, payment_status: str) -> Outcome:
        """A re-deposit (child payment) report with this NOWPayments payment_status."""
        return _lookup(REDEPOSIT, payment_status)

    @classmethod
    def order_moved(cls, order_status: str) -> Outcome:
        """A payment report that moved the order to this status."""
        return _lookup(ORDER_MOVED, order_status)

    @classmethod
    def order_already(cls, order_status: str) -> Outcome:
        """A payment report that would move the order but found it settled in this status."""
        return _lookup(ORDER_ALREADY, order_status)

    @classmethod
    def fulfillment_enqueued(cls, kinguin_status: str) -> Outcome:
        """A Kinguin event with this status that queued a fulfillment job."""
        return _lookup(FULFILLMENT_ENQUEUED, kinguin_status)

    @classmethod
    def order_not_awaiting_keys(cls, order_status: str, fulfillment_status: str) -> Outcome:
        """A Kinguin event for an order in this state, not paid-and-awaiting-keys."""
        return _lookup(ORDER_NOT_AWAITING_KEYS, (order_status, fulfillment_status))

    # Each member: its value, provider and meaning, laid out by hand.
    # fmt: off
    # --- both providers -------------------------------------------------------------------
    DUPLICATE = (
        "duplicate", None,
        "A copy of an event already stored: nothing applied. Only returned; no row has it.",
    )
    UNKNOWN_ORDER = (
        "unknown_order", None,
        "The event names no order of ours: kept and flagged, nothing applied.",
    )
    STALE = (
        "stale", None,
        "Older than what was applied (payment status rank, Kinguin watermark): ignored.",
    )

    # --- NOWPayments IPNs (and the reconciler's reads of the API) -------------------------
    PAYMENT_BELONGS_TO_ANOTHER_ORDER = (
        "payment_belongs_to_another_order", NP,
        "The payment id is already recorded for another order: flagged, nothing applied.",
    )
    REDEPOSIT_WAITING = (
        "redeposit_waiting", NP,
        "A re-deposit (child payment) reported waiting: recorded and flagged, order unchanged.",
    )
    REDEPOSIT_CONFIRMING = (
        "redeposit_confirming", NP,
        "A re-deposit reported confirming: recorded and flagged, order unchanged.",
    )
    REDEPOSIT_CONFIRMED = (
        "redeposit_confirmed", NP,
        "A re-deposit reported confirmed: recorded and flagged, order unchanged.",
    )
    REDEPOSIT_SENDING = (
        "redeposit_sending", NP,
        "A re-deposit reported sending: recorded and flagged, order unchanged.",
    )
    REDEPOSIT_PARTIALLY_PAID = (
        "redeposit_partially_paid", NP,
        "A re-deposit reported partially_paid: recorded and flagged, order unchanged.",
    )
    REDEPOSIT_FINISHED = (
        "redeposit_finished", NP,
        "A re-deposit reported finished: recorded and flagged for a human to settle.",
    )
    REDEPOSIT_FAILED = (
        "redeposit_failed", NP,
        "A re-deposit reported failed: recorded and flagged, order unchanged.",
    )
    REDEPOSIT_REFUNDED = (
        "redeposit_refunded", NP,
        "A re-deposit reported refunded: recorded and flagged, order unchanged.",
    )
    REDEPOSIT_EXPIRED = (
        "redeposit_expired", NP,
        "A re-deposit reported expired: recorded and flagged, order unchanged.",
    )
    PAYMENT_WAITING = (
        "payment_waiting", NP,
        "The payment waits for the customer's funds: recorded, order unchanged.",
    )
    PAYMENT_IN_PROGRESS = (
        "payment_in_progress", NP,
        "The payment is still confirming and the order already is: recorded, order unchanged.",
    )
    ORDER_CONFIRMING = (
        "order_confirming", NP,
        "Moved the order to confirming: the payment is seen, not final yet.",
    )
    ORDER_PAID = (
        "order_paid", NP,
        "Moved the order to paid and queued its fulfillment.",
    )
    ORDER_UNDERPAID = (
        "order_underpaid", NP,
        "Moved the order to underpaid: less than its total arrived, or the report did not"
        " prove the amount. Flagged.",
    )
    ORDER_FAILED = (
        "order_failed", NP,
        "Moved the order to failed: the payment failed (flagged when paid in another currency).",
    )
    ORDER_EXPIRED = (
        "order_expired", NP,
        "Moved the order to expired: the payment expired unpaid.",
    )
    ORDER_REFUNDED = (
        "order_refunded", NP,
        "Moved the order to refunded: the payment was refunded. Flagged.",
    )
    ORDER_ALREADY_PAID = (
        "order_already_paid", NP,
        "The order was already paid: nothing moved (flagged if the report was bad news).",
    )
    ORDER_ALREADY_FULFILLED = (
        "order_already_fulfilled", NP,
        "The order was already fulfilled: nothing moved (flagged if the report was bad news).",
    )
    ORDER_ALREADY_UNDERPAID = (
        "order_already_underpaid", NP,
        "The order was already underpaid: nothing moved (flagged if the report was bad news).",
    )
    ORDER_ALREADY_FAILED = (
        "order_already_failed", NP,
        "The order had already failed: nothing moved (flagged if the report was bad news).",
    )
    ORDER_ALREADY_EXPIRED = (
        "order_already_expired", NP,
        "The order had already expired: nothing moved (flagged if the report was bad news).",
    )
    ORDER_ALREADY_REFUNDED = (
        "order_already_refunded", NP,
        "The order was already refunded: nothing moved (flagged if the report was bad news).",
    )
    STILL_UNDERPAID = (
        "still_underpaid", NP,
        "A final report for an underpaid order still does not prove its total: order"
        " unchanged. Flagged.",
    )
    UNDERPAID_NOW_COVERED = (
        "underpaid_now_covered", NP,
        "A final report for an underpaid order covers its total: order unchanged (never paid"
        " by itself), flagged for a human to release or refund.",
    )

    # --- Kinguin order webhooks -----------------------------------------------------------
    OTHER_KINGUIN_ORDER = (
        "other_kinguin_order", KG,
        "Another Kinguin order carries our order id (bought twice?): flagged, no job.",
    )
    NOTED = (
        "noted", KG,
        "Kinguin is processing the order: watermark advanced, no job.",
    )
    KEYS_BEING_COLLECTED = (
        "keys_being_collected", KG,
        "Kinguin completed and the worker already collects the keys: no second job.",
    )
    FULFILLMENT_ENQUEUED_COMPLETED = (
        "fulfillment_enqueued_completed", KG,
        "Kinguin completed the order: a fulfillment job was queued to collect the keys.",
    )
    FULFILLMENT_ENQUEUED_CANCELED = (
        "fulfillment_enqueued_canceled", KG,
        "Kinguin canceled the order: a fulfillment job was queued to look again.",
    )
    FULFILLMENT_ENQUEUED_REFUNDED = (
        "fulfillment_enqueued_refunded", KG,
        "Kinguin refunded the order: a fulfillment job was queued to look again.",
    )
    FUTURE_TIMESTAMP = (
        "future_timestamp", KG,
        "Dated beyond our clock plus the allowed skew: flagged, watermark untouched; a job"
        " queued as a hint only if one would be for a correctly dated event.",
    )
    # --- Kinguin order webhooks about a key replacement (bitloot/fulfillment/replace.py) ---
    REPLACEMENT_ENQUEUED = (
        "replacement_enqueued", KG,
        "A key replacement's Kinguin order changed: its replace_key job was queued to look"
        " again.",
    )
    REPLACEMENT_NOTED = (
        "replacement_noted", KG,
        "A key replacement's Kinguin order is processing: nothing to do yet.",
    )
    REPLACEMENT_SETTLED = (
        "replacement_settled", KG,
        "A key replacement already delivered or failed: nothing done; flagged on"
        " cancel/refund.",
    )
    # --- Kinguin product.update webhooks (bitloot/catalog/service.py) ----------------------
    PRODUCT_UPDATED = (
        "product_updated", KG,
        "A product we sell: its Kinguin stock (and price, when sent) stored; without a price the"
        " next order reads the product again.",
    )
    UNKNOWN_PRODUCT = (
        "unknown_product", KG,
        "A product.update for a product we do not sell: recorded, nothing applied.",
    )
    # Our order is not paid-and-awaiting-keys (order_<status>_<fulfillment_status>): nothing
    # done; flagged when Kinguin reports canceled or refunded. One per state the schema allows.
    ORDER_CREATED_PENDING = (
        "order_created_pending", KG,
        "Our order is created (not yet invoiced): nothing done; flagged on cancel/refund.",
    )
    ORDER_WAITING_PENDING = (
        "order_waiting_pending", KG,
        "Our order is waiting for payment: nothing done; flagged on cancel/refund.",
    )
    ORDER_CONFIRMING_PENDING = (
        "order_confirming_pending", KG,
        "Our order's payment is confirming: nothing done; flagged on cancel/refund.",
    )
    ORDER_UNDERPAID_PENDING = (
        "order_underpaid_pending", KG,
        "Our order is underpaid: nothing done; flagged on cancel/refund.",
    )
    ORDER_FAILED_PENDING = (
        "order_failed_pending", KG,
        "Our order failed (payment side): nothing done; flagged on cancel/refund.",
    )
    ORDER_EXPIRED_PENDING = (
        "order_expired_pending", KG,
        "Our order expired unpaid: nothing done; flagged on cancel/refund.",
    )
    ORDER_PAID_FULFILLED = (
        "order_paid_fulfilled", KG,
        "Our order is paid, keys stored (a manual change): nothing done; flagged on cancel/refund.",
    )
    ORDER_PAID_FAILED = (
        "order_paid_failed", KG,
        "Our order's fulfillment failed: nothing done; flagged on cancel/refund.",
    )
    ORDER_FULFILLED_FULFILLED = (
        "order_fulfilled_fulfilled", KG,
        "Our order is fulfilled: nothing done; flagged on cancel/refund.",
    )
    ORDER_REFUNDED_PENDING = (
        "order_refunded_pending", KG,
        "Our order was refunded before fulfillment: nothing done; flagged on cancel/refund.",
    )
    ORDER_REFUNDED_PROCESSING = (
        "order_refunded_processing", KG,
        "Our order was refunded while being fulfilled: nothing done; flagged on cancel/refund.",
    )
    ORDER_REFUNDED_FULFILLED = (
        "order_refunded_fulfilled", KG,
        "Our order was refunded after fulfillment: nothing done; flagged on cancel/refund.",
    )
    ORDER_REFUNDED_FAILED = (
        "order_refunded_failed", KG,
        "Our order was refunded, fulfillment failed: nothing done; flagged on cancel/refund.",
    )
    # fmt: on


# --- the status-dependent values, by status -----------------------------------------------


def _lookup(table: Mapping[K, Outcome], key: K) -> Outcome:
    try:
        return table[key]
    except KeyError:
        raise ValueError(f"no webhook outcome for {key!r}") from None


# A re-deposit (child payment) report, by its NOWPayments payment_status.
REDEPOSIT: Final[Mapping[str, Outcome]] = {
    "waiting": Outcome.REDEPOSIT_WAITING,
    "confirming": Outcome.REDEPOSIT_CONFIRMING,
    "confirmed": Outcome.REDEPOSIT_CONFIRMED,
    "sending": Outcome.REDEPOSIT_SENDING,
    "partially_paid": Outcome.REDEPOSIT_PARTIALLY_PAID,
    "finished": Outcome.REDEPOSIT_FINISHED,
    "failed": Outcome.REDEPOSIT_FAILED,
    "refunded": Outcome.REDEPOSIT_REFUNDED,
    "expired": Outcome.REDEPOSIT_EXPIRED,
}

# A payment report that moved the order, by the order status it moved it to.
ORDER_MOVED: Final[Mapping[str, Outcome]] = {
    "confirming": Outcome.ORDER_CONFIRMING,
    "paid": Outcome.ORDER_PAID,
    "underpaid": Outcome.ORDER_UNDERPAID,
    "failed": Outcome.ORDER_FAILED,
    "expired": Outcome.ORDER_EXPIRED,
    "refunded": Outcome.ORDER_REFUNDED,
}

# A payment report that would move the order but found it settled, by the order's status
# (every status a report can no longer move; the open ones, created, waiting and
# confirming, always can).
ORDER_ALREADY: Final[Mapping[str, Outcome]] = {
    "paid": Outcome.ORDER_ALREADY_PAID,
    "fulfilled": Outcome.ORDER_ALREADY_FULFILLED,
    "underpaid": Outcome.ORDER_ALREADY_UNDERPAID,
    "failed": Outcome.ORDER_ALREADY_FAILED,
    "expired": Outcome.ORDER_ALREADY_EXPIRED,
    "refunded": Outcome.ORDER_ALREADY_REFUNDED,
}

# A Kinguin event that queued a fulfillment job, by the Kinguin status it reported
# (processing only ever notes).
FULFILLMENT_ENQUEUED: Final[Mapping[str, Outcome]] = {
    "completed": Outcome.FULFILLMENT_ENQUEUED_COMPLETED,
    "canceled": Outcome.FULFILLMENT_ENQUEUED_CANCELED,
    "refunded": Outcome.FULFILLMENT_ENQUEUED_REFUNDED,
}

# A Kinguin event for an order not paid-and-awaiting-keys, by (status, fulfillment_status):
# every pair the orders CHECK constraints allow except paid/pending and paid/processing.
ORDER_NOT_AWAITING_KEYS: Final[Mapping[tuple[str, str], Outcome]] = {
    ("created", "pending"): Outcome.ORDER_CREATED_PENDING,
    ("waiting", "pending"): Outcome.ORDER_WAITING_PENDING,
    ("confirming", "pending"): Outcome.ORDER_CONFIRMING_PENDING,
    ("underpaid", "pending"): Outcome.ORDER_UNDERPAID_PENDING,
    ("failed", "pending"): Outcome.ORDER_FAILED_PENDING,
    ("expired", "pending"): Outcome.ORDER_EXPIRED_PENDING,
    ("paid", "fulfilled"): Outcome.ORDER_PAID_FULFILLED,
    ("paid", "failed"): Outcome.ORDER_PAID_FAILED,
    ("fulfilled", "fulfilled"): Outcome.ORDER_FULFILLED_FULFILLED,
    ("refunded", "pending"): Outcome.ORDER_REFUNDED_PENDING,
    ("refunded", "processing"): Outcome.ORDER_REFUNDED_PROCESSING,
    ("refunded", "fulfilled"): Outcome.ORDER_REFUNDED_FULFILLED,
    ("refunded", "failed"): Outcome.ORDER_REFUNDED_FAILED,
}
