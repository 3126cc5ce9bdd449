"""Applying a Kinguin order webhook: stored once, stale events ignored, work enqueued as a hint.

The webhook only says "look again": the fulfillment job re-reads the order from the API
before acting, so a forged or stale event can at most cause one extra read. It never buys.
"""

from __future__ import annotations

from typing import Any

import psycopg

from bitloot.fulfillment import repository
from bitloot.fulfillment.service import defer_fulfillment
from bitloot.inbox import service as inbox
from bitloot.inbox.service import EventOutcome, Outcome
from bitloot.kinguin.models import OrderStatusEvent

Conn = psycopg.AsyncConnection[Any]


async def receive_order_event(
    conn: Conn, event_name: str, event: OrderStatusEvent, raw_body: str
) -> EventOutcome:
    """Store the event once and apply it, in the caller's transaction."""
    event_id = await inbox.store(
        conn,
        provider="kinguin",
        dedup_key=f"{event.order_id}:{event.status}:{event.updated_at.isoformat()}",
        event_type=event_name,
        external_id=event.order_id,
        order_id=inbox.order_uuid(event.order_external_id),
        raw_body=raw_body,
    )
    if event_id is None:
        return EventOutcome(Outcome.DUPLICATE, duplicate=True)
    result = await apply_order_status(conn, event)
    await inbox.finish(conn, event_id, result)
    return result


async def apply_order_status(conn: Conn, event: OrderStatusEvent) -> EventOutcome:
    """Advance the watermark and enqueue the fulfillment job to look at the order again."""
    order = await repository.order_for_kinguin_event(
        conn, event.order_id, inbox.order_uuid(event.order_external_id)
    )
    if order is None:
        return EventOutcome(Outcome.UNKNOWN_ORDER, needs_attention=True)
    recorded_id = order.kinguin_order_id
    if recorded_id is not None and recorded_id != event.order_id:
        # Another Kinguin order carries our orderExternalId: bought twice? For a human; it
        # says nothing about the order we recorded, so no watermark and no job.
        return EventOutcome(Outcome.OTHER_KINGUIN_ORDER, needs_attention=True, order_id=order.id)
    if recorded_id is not None:
        watermark = order.status_updated_at
        if watermark is not None and event.updated_at <= watermark:
            return EventOutcome(Outcome.STALE, order_id=order.id)
        await repository.advance_watermark(conn, order.id, event.status, event.updated_at)
    if order.status != "paid" or order.fulfillment_status not in ("pending", "processing"):
        # Already fulfilled (or failed): a later cancel/refund at Kinguin is for a human.
        attention = event.status in ("canceled", "refunded")
        return EventOutcome(
            Outcome.order_not_awaiting_keys(order.status, order.fulfillment_status),
            needs_attention=attention,
            order_id=order.id,
        )
    if event.status == "processing":
        return EventOutcome(Outcome.NOTED, order_id=order.id)
    if event.status == "completed" and order.kinguin_status == "completed":
        # The worker already saw the order complete and is collecting the keys; if it dies
        # doing so, its job is retried as a stalled job. A second job would only skip.
        return EventOutcome(Outcome.KEYS_BEING_COLLECTED, order_id=order.id)
    await defer_fulfillment(conn, order.id)
    outcome = Outcome.fulfillment_enqueued(event.status)
    return EventOutcome(outcome, order_id=order.id, enqueued=True)
