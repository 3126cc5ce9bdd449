"""Storing a verified webhook exactly once and recording what applying it did.

The pattern, for every provider, inside the caller's one transaction:

    event_id = await inbox.store(conn, ...)      # None: a duplicate, stop here
    outcome = ...apply the business change...
    await inbox.finish(conn, event_id, outcome)

`outcome` is one `Outcome` (bitloot/inbox/outcomes.py): a closed list the database also
holds (`webhook_outcomes`, referenced by `webhook_events.outcome`).

`UNIQUE (provider, dedup_key)` makes the insert the deduplication: a resent, replayed or
concurrent copy of the same event inserts nothing and changes nothing. The outcome is
committed together with the business change, or neither is.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from bitloot.db.queries import QuerySet
from bitloot.inbox.outcomes import Outcome, Provider

__all__ = [
    "DUPLICATE",
    "Conn",
    "EventOutcome",
    "Outcome",
    "Provider",
    "finish",
    "order_uuid",
    "store",
]

Q = QuerySet("bitloot.inbox")
Conn = psycopg.AsyncConnection[Any]


@dataclass(frozen=True)
class EventOutcome:
    """What applying one webhook did; `outcome` and `needs_attention` are stored on its row."""

    outcome: Outcome
    duplicate: bool = False
    needs_attention: bool = False
    order_id: uuid.UUID | None = None  # the order it was matched to
    enqueued: bool = False  # whether it queued a fulfillment job


DUPLICATE = Outcome.DUPLICATE


async def store(
    conn: Conn,
    *,
    provider: Provider,
    dedup_key: str,
    event_type: str,
    external_id: str | None,
    order_id: uuid.UUID | None,
    raw_body: str,
    signature_variant: str | None = None,
) -> int | None:
    """Insert the event once; its id, or None when the same event was already stored."""
    cur = await conn.execute(
        Q["insert_webhook_event"],
        {
            "provider": provider,
            "dedup_key": dedup_key,
            "event_type": event_type,
            "external_id": external_id,
            "order_id": order_id,
            "raw_body": raw_body,
            "signature_variant": signature_variant,
        },
    )
    row = await cur.fetchone()
    return None if row is None else int(row[0])


async def finish(conn: Conn, event_id: int, result: EventOutcome) -> None:
    """Record what applying the event did, and the order it was matched to."""
    await conn.execute(
        Q["finish_webhook_event"],
        {
            "id": event_id,
            "outcome": result.outcome,
            "needs_attention": result.needs_attention,
            "order_id": result.order_id,
        },
    )


def order_uuid(value: str | None) -> uuid.UUID | None:
    """The order id a provider echoes back, when it is one of ours (a UUID)."""
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None
