"""How a Kinguin purchase is kept exactly-once: the whole rule, in one place.

Kinguin gives no idempotency key, but it does keep our `orderExternalId` (= our order id)
on every order and lets us search by it. So, per order:

1. **The marker.** Before the first purchase attempt, `orders.kinguin_placement_started_at`
   is committed (`mark_started`). From then on a Kinguin order may exist for this order
   even if we never heard back.
2. **The lookup.** When the marker is set and no Kinguin order is recorded, an earlier
   attempt may have bought and crashed before recording: search Kinguin by
   `orderExternalId` first, and only buy when nothing is found.
3. **The placement.** `POST /v2/order` with `orderExternalId`. After an ambiguous failure
   (timeout, dropped connection, 429/5xx) or a refusal that may mean "this external id is
   taken", the client's retry calls back into `recover_placed` here, which searches by
   `orderExternalId` again before any re-send: an order that reached Kinguin is found,
   never bought a second time.
4. **The record.** The Kinguin order is written to `kinguin_orders` with
   `ON CONFLICT (order_id) DO NOTHING`: the first record wins, and jobs for one order are
   serialised by the procrastinate lock `order:<id>` anyway.
5. **The webhook** (`kinguin_webhook`) only ever asks the job to look again; it never buys.

A Kinguin order that Kinguin itself canceled or refunded is not bought again (that would
need a new `orderExternalId`): the order fails for an admin to refund.

A key replacement (`replace`) buys under the same rule with its own `orderExternalId`
(`<order id>-r<number>`, never the order id): its marker is
`key_replacements.placement_started_at`, its record `key_replacements.kinguin_order_id`, and
steps 2 and 3 are this module's `find_or_place`, shared with the first purchase.
"""

from __future__ import annotations

import uuid

import structlog

from bitloot.chaos import crash_point
from bitloot.fulfillment import repository
from bitloot.kinguin.client import KinguinClient, RecoverHook
from bitloot.kinguin.errors import KinguinError, KinguinPermanentError
from bitloot.kinguin.models import Order, OrderProductRequest
from bitloot.resources import Resources

log = structlog.get_logger(__name__)


class PurchaseRefused(Exception):
    """Kinguin refused the order for good (no stock, no balance, a price too high...)."""

    def __init__(self, kind: str, status: int | None = None, detail: str = "") -> None:
        # Kinguin's error code first (what admins and tests match on), then what it said.
        said = f" (HTTP {status})" if status is not None else ""
        said += f": {detail}" if detail else ""
        super().__init__(f"Kinguin refused the order: {kind}{said}")
        self.kind = kind


async def mark_started(conn: repository.Conn, order_id: uuid.UUID) -> None:
    """Step 1: from this commit on, a Kinguin order may exist for `order_id`."""
    await repository.mark_placement_started(conn, order_id)


async def place_once(
    res: Resources, order_id: uuid.UUID, lines: list[repository.OrderLine], *, may_exist: bool
) -> Order:
    """Steps 2 to 4 for the order's first purchase: find the order an earlier attempt
    placed, or place it; record it.

    `PurchaseRefused` when Kinguin will not sell; retryable Kinguin errors propagate (the
    job retries, and the marker makes the retry look up before buying).
    """
    placed = await find_or_place(
        res.kinguin_client, str(order_id), products_for(lines), may_exist=may_exist
    )
    async with res.pool.connection() as conn, conn.transaction():
        await repository.record_kinguin_order(
            conn, order_id, placed.order_id, placed.status, placed.payment_price
        )
    return placed


async def find_or_place(
    kinguin: KinguinClient,
    external_id: str,
    products: list[OrderProductRequest],
    *,
    may_exist: bool,
    chaos: str = "",
) -> Order:
    """Steps 2 and 3 for any `orderExternalId`: the order an earlier attempt placed (looked
    up only when `may_exist`, i.e. the caller's marker was already committed), or a new
    one. The caller records it (step 4). `chaos` prefixes the names of the crash points.

    `PurchaseRefused` when Kinguin will not sell; retryable Kinguin errors propagate.
    """
    existing = await kinguin.find_order_by_external_id(external_id) if may_exist else None
    if existing is not None:
        log.info("kinguin.order_recovered", kinguin_order_id=existing.order_id)
        return existing
    crash_point(f"{chaos}before_place")
    try:
        placed = await kinguin.place_order(
            products, external_id, recover=recover_placed(kinguin, external_id)
        )
    except KinguinPermanentError as exc:
        raise PurchaseRefused(exc.kind, exc.status, exc.detail) from None
    # No line of our own: the client logged `kinguin.order_placed` with every id.
    crash_point(f"{chaos}after_place")
    return placed


def recover_placed(kinguin: KinguinClient, external_id: str) -> RecoverHook:
    """Step 3's hook: after an ambiguous failure, the order Kinguin already has, if any."""

    async def recover(cause: KinguinError) -> Order | None:
        existing = await kinguin.find_order_by_external_id(external_id)
        if existing is not None:
            log.warning(
                "kinguin.order_recovered",
                kinguin_order_id=existing.order_id,
                cause=cause.kind,
                status=existing.status,
            )
        return existing

    return recover


def products_for(lines: list[repository.OrderLine]) -> list[OrderProductRequest]:
    """What to ask Kinguin for: each line's product and quantity, at most its `max_cost`
    per unit, text keys only for a text-only product."""
    return [
        OrderProductRequest(
            product_id=line.product_id,
            qty=line.qty,
            price=line.max_cost,
            key_type="text" if line.text_only else None,
        )
        for line in lines
    ]
