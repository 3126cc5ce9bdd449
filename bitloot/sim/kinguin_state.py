"""Kinguin simulator: orders, stock, balance and the key delivery plan (no HTTP here).

Time comes from an injectable monotonic clock; every advance (from the ticker or a request)
delivers keys that are due and returns the `order.status` events to send.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from bitloot.sim.kinguin_catalog import KeyFactory, SimOffer, SimProduct, seed_products
from bitloot.sim.kinguin_rules import (
    MAX_QTY,
    ParsedLine,
    SimRejection,
    constraint,
    parse_order_body,
)

DuplicateMode = Literal["constraint_violation", "order_failed", "return_existing"]
Fate = Literal["completed", "canceled", "refunded"]
# Kinguin refuses a key return more than 24 h after delivery (features/ReturnKeys.md).
RETURN_WINDOW_SECONDS = 24 * 3600


@dataclass
class DeliveryPlan:
    """How the next orders deliver: `delay` seconds until the last key; with `gradual`
    the keys are spread evenly over it; `instant_keys` arrive with the order;
    `keys_per_poll` more keys are released by every `GET .../keys` whatever the time."""

    delay: float = 1.0
    gradual: bool = True
    instant_keys: int = 0
    keys_per_poll: int | None = None


@dataclass
class SimKey:
    """One key of an order; `serial` is plaintext and lives only in memory."""

    id: str
    serial: str
    type: str
    line: SimLine
    ready_at: float
    delivered_seq: int | None = None
    status: str = "PENDING"
    delivered_at: float | None = None


@dataclass
class SimLine:
    """One product line of an order."""

    product: SimProduct
    offer: SimOffer
    qty: int
    price: Decimal
    request_price: Decimal
    key_type: str | None


@dataclass
class SimOrder:
    """An order as the simulator keeps it."""

    order_id: str
    external_id: str | None
    kinguin_order_id: int
    created_at: datetime
    placed_at: float
    finish_at: float
    fate: Fate
    keys_per_poll: int | None
    lines: list[SimLine]
    keys: list[SimKey] = field(default_factory=list)
    status: str = "processing"
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    is_preorder: bool = False
    return_requested: bool = False

    @property
    def total_price(self) -> Decimal:
        """What the order cost."""
        return sum((line.price * line.qty for line in self.lines), Decimal("0"))

    def delivered(self) -> list[SimKey]:
        """Delivered keys in delivery order."""
        done = [k for k in self.keys if k.delivered_seq is not None]
        return sorted(done, key=lambda k: k.delivered_seq or 0)


@dataclass(frozen=True)
class StatusEvent:
    """An `order.status` webhook to send."""

    order_id: str
    order_external_id: str | None
    status: str
    updated_at: datetime


class KinguinSimState:
    """The simulator's in-memory account: catalogue, balance, orders."""

    def __init__(
        self,
        *,
        seed: int | None = None,
        balance: Decimal = Decimal("1000.00"),
        delivery: DeliveryPlan | None = None,
        duplicate_external_id: DuplicateMode = "constraint_violation",
        notify_processing: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.initial_seed = seed
        self._initial_balance = balance
        self._initial_delivery = delivery or DeliveryPlan()
        self._initial_duplicate_mode: DuplicateMode = duplicate_external_id
        self._initial_notify_processing = notify_processing
        self._clock = clock
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        """Back to the configured start: seeded catalogue and balance, no orders."""
        self.seed = seed
        self.duplicate_external_id: DuplicateMode = self._initial_duplicate_mode
        self.notify_processing = self._initial_notify_processing
        self.keys = KeyFactory(random.Random(seed))  # noqa: S311 (simulated data)
        # A second stream for key types, so ids stay stable if type choices change.
        types_seed = None if seed is None else f"key-types:{seed}"
        self._rng = random.Random(types_seed)  # noqa: S311 (simulated data)
        self.products: dict[str, SimProduct] = {p.product_id: p for p in seed_products()}
        self._seeded_stock = {
            (p.product_id, o.offer_id): (o.qty, o.text_qty)
            for p in self.products.values()
            for o in p.offers
        }
        self.balance = self._initial_balance
        self.delivery = DeliveryPlan(**vars(self._initial_delivery))
        self.orders: dict[str, SimOrder] = {}
        self.next_fates: deque[Fate] = deque()
        self._next_kinguin_id = 1_000_001
        self._delivery_seq = 0

    # --- catalogue --------------------------------------------------------------------

    def product_by_kinguin_id(self, kinguin_id: int) -> SimProduct | None:
        """Look a product up by its numeric id."""
        return next((p for p in self.products.values() if p.kinguin_id == kinguin_id), None)

    def set_stock(self, product_id: str, qty: int | None, offer_id: str | None = None) -> None:
        """Set every (or one) offer's stock to `qty` keys, keeping the seeded text/image
        mix; `None` restores the seeded stock."""
        product = self.products[product_id]
        for offer in product.offers:
            if offer_id is not None and offer.offer_id != offer_id:
                continue
            seeded_qty, seeded_text = self._seeded_stock.get(
                (product_id, offer.offer_id), (offer.qty, offer.text_qty)
            )
            if qty is None:
                offer.qty, offer.text_qty = seeded_qty, seeded_text
            else:
                text = qty if seeded_qty == 0 else qty * seeded_text // seeded_qty
                offer.qty, offer.text_qty = qty, text

    def add_product(self, product: SimProduct) -> None:
        """Add or replace a product; its stock becomes what `set_stock(None)` restores."""
        self.products[product.product_id] = product
        for o in product.offers:
            self._seeded_stock[(product.product_id, o.offer_id)] = (o.qty, o.text_qty)

    # --- ordering ---------------------------------------------------------------------

    def find_by_external_id(self, external_id: str) -> SimOrder | None:
        """The order carrying this orderExternalId, if any."""
        return next((o for o in self.orders.values() if o.external_id == external_id), None)

    def place_order(self, body: Any) -> tuple[SimOrder, bool]:
        """Validate and place an order; returns (order, created). Raises SimRejection."""
        lines, external_id = parse_order_body(body)
        if external_id is not None and (existing := self.find_by_external_id(external_id)):
            if self.duplicate_external_id == "return_existing":
                return existing, False
            if self.duplicate_external_id == "order_failed":
                raise SimRejection(422, "OrderFailed", "Order with this orderExternalId exists.")
            raise constraint(
                "Duplicate orderExternalId: an order with it already exists.",
                "orderExternalId",
                external_id,
            )
        chosen = [self._choose_offer(line) for line in lines]
        total = sum((offer.price * line.qty for line, offer in chosen), Decimal("0"))
        if total > self.balance:
            # Status 422 is inferred: the docs do not give one for InsufficientBalance.
            raise SimRejection(422, "InsufficientBalance", "Insufficient balance.")
        self.balance -= total
        return self._create(external_id, chosen), True

    def _choose_offer(self, line: ParsedLine) -> tuple[ParsedLine, SimOffer]:
        product = self.products.get(line.product_id)
        if product is None:
            raise SimRejection(422, "ProductUnavailable", "Product not found.")
        offers = [o for o in product.offers if line.offer_id in (None, o.offer_id)]
        if line.qty > MAX_QTY and not any(o.wholesale for o in offers):
            raise constraint("Quantity above 9 needs a wholesale offerId.", "qty", line.qty)
        # `price` is treated as the most we pay per unit (inferred from the docs).
        eligible = [
            o
            for o in offers
            if o.price <= line.price
            and (o.text_qty if line.key_type == "text" else o.qty) >= line.qty
        ]
        if not eligible:
            raise SimRejection(
                422, "ProductUnavailable", "No offer matches the request criteria (price, qty)."
            )
        return line, min(eligible, key=lambda o: o.price)

    def _create(
        self, external_id: str | None, chosen: list[tuple[ParsedLine, SimOffer]]
    ) -> SimOrder:
        now = self._clock()
        plan = self.delivery
        fate: Fate = self.next_fates.popleft() if self.next_fates else "completed"
        order = SimOrder(
            order_id=self.keys.order_id(),
            external_id=external_id,
            kinguin_order_id=self._next_kinguin_id,
            created_at=datetime.now(UTC).replace(microsecond=0),
            placed_at=now,
            finish_at=now + plan.delay,
            fate=fate,
            keys_per_poll=plan.keys_per_poll,
            lines=[],
        )
        self._next_kinguin_id += 1
        for parsed, offer in chosen:
            product = self.products[parsed.product_id]
            line = SimLine(product, offer, parsed.qty, offer.price, parsed.price, parsed.key_type)
            order.lines.append(line)
            for _ in range(parsed.qty):
                order.keys.append(self._take_key(line))
        self._schedule(order, plan)
        self.orders[order.order_id] = order
        return order

    def _take_key(self, line: SimLine) -> SimKey:
        offer = line.offer
        images = offer.qty - offer.text_qty
        is_image = (
            line.key_type != "text" and images > 0 and self._rng.random() < images / offer.qty
        )
        offer.qty -= 1
        if is_image:
            key_type = self._rng.choice(offer.image_types)
            serial = self.keys.image_serial(key_type)
        else:
            offer.text_qty -= 1
            key_type, serial = "text/plain", self.keys.text_serial()
        return SimKey(self.keys.hex_id(), serial, key_type, line, ready_at=float("inf"))

    def _schedule(self, order: SimOrder, plan: DeliveryPlan) -> None:
        if order.fate != "completed":
            return  # canceled/refunded orders never deliver (their keys stay at inf)
        instant = min(plan.instant_keys, len(order.keys))
        rest = order.keys[instant:]
        for key in order.keys[:instant]:
            key.ready_at = order.placed_at
        for i, key in enumerate(rest):
            share = (i + 1) / len(rest) if plan.gradual else 1.0
            key.ready_at = order.placed_at + plan.delay * share
        self._deliver_due(order, order.placed_at)

    # --- time passing -----------------------------------------------------------------

    def advance(self) -> list[StatusEvent]:
        """Deliver what is due and finish orders; return the status changes."""
        now = self._clock()
        events: list[StatusEvent] = []
        for order in self.orders.values():
            if order.status != "processing":
                continue
            if order.fate != "completed":
                if now >= order.finish_at:
                    events.append(self._end(order, order.fate))
                continue
            self._deliver_due(order, now)
            if all(k.delivered_seq is not None for k in order.keys):
                events.append(self._finish(order))
        return events

    def poll_keys(self, order: SimOrder) -> list[SimKey]:
        """Delivered keys after a `GET .../keys` poll (which may release more)."""
        if order.status == "processing" and order.keys_per_poll:
            waiting = [k for k in order.keys if k.delivered_seq is None]
            for key in sorted(waiting, key=lambda k: k.ready_at)[: order.keys_per_poll]:
                self._deliver(key)
        return order.delivered()

    def complete_now(self, order: SimOrder) -> StatusEvent:
        """Deliver every key of a processing order and complete it at once."""
        for key in order.keys:
            if key.delivered_seq is None:
                self._deliver(key)
        return self._finish(order)

    def _deliver_due(self, order: SimOrder, now: float) -> None:
        for key in order.keys:
            if key.delivered_seq is None and key.ready_at <= now:
                self._deliver(key)
        if any(k.delivered_seq is not None for k in order.keys):
            for key in order.keys:
                if key.delivered_seq is None:
                    key.status = "PROCESSING"

    def _deliver(self, key: SimKey) -> None:
        self._delivery_seq += 1
        key.delivered_seq = self._delivery_seq
        key.status = "DELIVERED"
        key.delivered_at = self._clock()

    # --- returns ----------------------------------------------------------------------

    def return_keys(self, order: SimOrder) -> list[SimKey]:
        """`POST /v2/order/{id}/keys/return`: take back the delivered keys and refund them;
        the order's keys afterwards. Refused (`NoKeysToReturn`, 400 **inferred**) for a second
        request, a pre-order, a wholesale item, more than 24 h since delivery, or nothing
        delivered. Undelivered keys are left as they are (Kinguin returns them once delivered,
        which the simulator does not model)."""
        if order.return_requested:
            raise SimRejection(400, "NoKeysToReturn", "Only one return request per order.")
        order.return_requested = True
        delivered = [k for k in order.keys if k.status == "DELIVERED"]
        if order.is_preorder:
            raise SimRejection(400, "NoKeysToReturn", "Pre-orders cannot be returned.")
        if any(line.qty > MAX_QTY for line in order.lines):
            raise SimRejection(400, "NoKeysToReturn", "The order has a wholesale item.")
        if not delivered:
            raise SimRejection(400, "NoKeysToReturn", "No delivered keys to return.")
        first = min(k.delivered_at or 0.0 for k in delivered)
        if self._clock() - first > RETURN_WINDOW_SECONDS:
            raise SimRejection(
                400, "NoKeysToReturn", "More than 24 hours have passed since delivery."
            )
        for key in delivered:
            key.status = "RETURNED"
            key.line.offer.qty += 1  # back in stock
            if key.type == "text/plain":
                key.line.offer.text_qty += 1
            self.balance += key.line.price
        order.updated_at = datetime.now(UTC)
        return list(order.keys)

    def backdate(self, order: SimOrder, seconds: float) -> None:
        """Make the order and its deliveries `seconds` older (for the 24 h return rule)."""
        order.placed_at -= seconds
        order.finish_at -= seconds
        for key in order.keys:
            key.ready_at -= seconds
            if key.delivered_at is not None:
                key.delivered_at -= seconds

    def _finish(self, order: SimOrder) -> StatusEvent:
        order.status = "completed"
        return self._touch(order)

    def _end(self, order: SimOrder, fate: Fate) -> StatusEvent:
        order.status = fate
        for key in order.keys:
            key.status = "CANCELED" if fate == "canceled" else "REFUNDED"
            key.line.offer.qty += 1  # the key goes back on sale
            if key.type == "text/plain":
                key.line.offer.text_qty += 1
        self.balance += order.total_price
        return self._touch(order)

    def _touch(self, order: SimOrder) -> StatusEvent:
        order.updated_at = datetime.now(UTC)
        return StatusEvent(order.order_id, order.external_id, order.status, order.updated_at)
