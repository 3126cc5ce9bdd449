"""Applying a Kinguin order webhook: stored once, stale events ignored, work enqueued as a hint.

The webhook only says "look again": the fulfillment job (or, for the Kinguin order of a
key replacement, whose orderExternalId is `<order id>-r<number>`, the `replace_key` job)
re-reads the order from the API before acting, so a forged or stale event can at most
cause one extra read. It never buys.
An event dated in the future is not trusted as the watermark (`MAX_CLOCK_SKEW`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bitloot.fulfillment import replace, repository
from bitloot.fulfillment.service import defer_fulfillment
from bitloot.inbox import service as inbox
from bitloot.inbox.service import EventOutcome, Outcome
from bitloot.kinguin.models import OrderStatusEvent

Conn = psycopg.AsyncConnection[Any]

# How far past our clock an event's updatedAt may be and still become the order's watermark.
# Two honest clocks differ by seconds; five minutes leaves room for a badly synced one. An
# event dated later (a clock gone wrong, a bad value) would make every real event before
# that date "stale", for months if need be, so its date is not used: it is flagged instead.
MAX_CLOCK_SKEW = timedelta(minutes=5)


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
        replacement = await replace.replacement_for_event(
            conn, event.order_id, event.order_external_id
        )
        if replacement is not None:
            return await _look_again_at_replacement(conn, replacement, event)
        return EventOutcome(Outcome.UNKNOWN_ORDER, needs_attention=True)
    recorded_id = order.kinguin_order_id
    if recorded_id is not None and recorded_id != event.order_id:
        # Another Kinguin order carries our orderExternalId: bought twice? For a human; it
        # says nothing about the order we recorded, so no watermark and no job.
        return EventOutcome(Outcome.OTHER_KINGUIN_ORDER, needs_attention=True, order_id=order.id)
    horizon = datetime.now(UTC) + MAX_CLOCK_SKEW
    future = event.updated_at > horizon
    if recorded_id is not None and not future:
        watermark = order.status_updated_at
        # A watermark past the horizon was stored before this rule: not trusted either.
        if watermark is not None and watermark <= horizon and event.updated_at <= watermark:
            return EventOutcome(Outcome.STALE, order_id=order.id)
        await repository.advance_watermark(
            conn, order.id, event.status, event.updated_at, horizon=horizon
        )
    result = await _look_again(conn, order, event)
    if future:
        # Stored and flagged, the watermark untouched; the job (if any) is still queued,
        # exactly as for a correctly dated event: it re-reads the order from Kinguin and
        # acts only on what the API says, so a bad event costs one read, while dropping a
        # real completion whose only fault is its date would leave the keys waiting.
        return EventOutcome(
            Outcome.FUTURE_TIMESTAMP,
            needs_attention=True,
            order_id=order.id,
            enqueued=result.enqueued,
        )
    return result


async def _look_again(
    conn: Conn, order: repository.EventOrder, event: OrderStatusEvent
) -> EventOutcome:
    """Whether the event is worth a fulfillment job, and the job when it is."""
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


async def _look_again_at_replacement(
    conn: Conn, replacement: replace.EventReplacement, event: OrderStatusEvent
) -> EventOutcome:
    """An event about a key replacement's Kinguin order: queue its job unless there is
    nothing to do. No watermark: the job re-reads the order from the API anyway."""
    order_id = replacement.order_id
    recorded_id = replacement.kinguin_order_id
    if recorded_id is not None and recorded_id != event.order_id:
        return EventOutcome(Outcome.OTHER_KINGUIN_ORDER, needs_attention=True, order_id=order_id)
    if replacement.status in ("delivered", "failed"):
        attention = event.status in ("canceled", "refunded")
        return EventOutcome(
            Outcome.REPLACEMENT_SETTLED, needs_attention=attention, order_id=order_id
        )
    if event.status == "processing":
        return EventOutcome(Outcome.REPLACEMENT_NOTED, order_id=order_id)
    await replace.defer_replacement(conn, replacement.id)
    return EventOutcome(Outcome.REPLACEMENT_ENQUEUED, order_id=order_id, enqueued=True)
