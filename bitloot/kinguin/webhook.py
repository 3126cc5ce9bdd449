"""Applying a Kinguin webhook: stored once, stale events ignored, work enqueued as a hint.

The webhook only says "look again": the fulfillment job re-reads the order from the API
before acting, so a forged or stale event can at most cause one extra read.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from bitloot.db.queries import QuerySet
from bitloot.kinguin.models import OrderStatusEvent

Q = QuerySet("bitloot.kinguin")
QP = QuerySet("bitloot.payments")

Enqueue = Callable[[psycopg.AsyncConnection[Any], uuid.UUID], Awaitable[None]]


@dataclass(frozen=True)
class WebhookOutcome:
    """What the event did; stored on its webhook_events row."""

    outcome: str
    duplicate: bool = False
    needs_attention: bool = False
    order_id: uuid.UUID | None = None  # the order it was matched to


def _uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


async def store_event(
    conn: psycopg.AsyncConnection[Any],
    *,
    event_name: str,
    dedup_key: str,
    external_id: str | None,
    order_id: uuid.UUID | None,
    raw_body: str,
) -> int | None:
    """Insert the event once; its id, or None when it was already stored."""
    cur = await conn.execute(
        QP["insert_webhook_event"],
        {
            "provider": "kinguin",
            "dedup_key": dedup_key,
            "event_type": event_name,
            "external_id": external_id,
            "order_id": order_id,
            "raw_body": raw_body,
            "signature_variant": None,
        },
    )
    row = await cur.fetchone()
    return None if row is None else int(row[0])


async def finish_event(
    conn: psycopg.AsyncConnection[Any], event_id: int, result: WebhookOutcome
) -> None:
    """Record what applying the event did."""
    await conn.execute(
        QP["finish_webhook_event"],
        {"id": event_id, "outcome": result.outcome, "needs_attention": result.needs_attention},
    )
    if result.order_id is not None:
        # Matched by the Kinguin orderId: link it even if orderExternalId was absent.
        await conn.execute(Q["link_event_order"], {"id": event_id, "order_id": result.order_id})


async def apply_order_status(
    conn: psycopg.AsyncConnection[Any], event: OrderStatusEvent, enqueue: Enqueue
) -> WebhookOutcome:
    """Advance the watermark and enqueue the fulfillment job to look at the order again."""
    cur = await conn.execute(
        Q["order_for_event"],
        {"kinguin_order_id": event.order_id, "external_id": _uuid(event.order_external_id)},
    )
    found = await cur.fetchone()
    if found is None:
        return WebhookOutcome("unknown_order", needs_attention=True)
    cur = await conn.execute(Q["lock_event_order"], {"order_id": found[0]})
    row = await cur.fetchone()
    assert row is not None  # orders are never deleted
    order_id, status, fulfillment_status, recorded_id, watermark, kinguin_status = row
    if recorded_id is not None and recorded_id != event.order_id:
        # Another Kinguin order carries our orderExternalId: bought twice? For a human; it
        # says nothing about the order we recorded, so no watermark and no job.
        return WebhookOutcome("other_kinguin_order", needs_attention=True, order_id=order_id)
    if recorded_id is not None:
        if watermark is not None and event.updated_at <= watermark:
            return WebhookOutcome("stale", order_id=order_id)
        await conn.execute(
            Q["advance_watermark"],
            {"order_id": order_id, "status": event.status, "updated_at": event.updated_at},
        )
    if status != "paid" or fulfillment_status not in ("pending", "processing"):
        # Already fulfilled (or failed): a later cancel/refund at Kinguin is for a human.
        attention = event.status in ("canceled", "refunded")
        return WebhookOutcome(
            f"order_{status}_{fulfillment_status}", needs_attention=attention, order_id=order_id
        )
    if event.status == "processing":
        return WebhookOutcome("noted", order_id=order_id)
    if event.status == "completed" and kinguin_status == "completed":
        # The worker already saw the order complete and is collecting the keys; if it dies
        # doing so, its job is retried as a stalled job. A second job would only skip.
        return WebhookOutcome("keys_being_collected", order_id=order_id)
    await enqueue(conn, order_id)
    return WebhookOutcome(f"fulfillment_enqueued_{event.status}", order_id=order_id)
