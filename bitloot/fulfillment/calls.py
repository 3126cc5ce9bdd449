"""The audit trail of Kinguin calls: every HTTP attempt made for an order is one
append-only `kinguin_calls` row (migration 0013).

The Kinguin client stays transport: it reports each attempt to the observers of
`observe_calls`, a context variable, so only the calls of the current asyncio task (one
`fulfill_order` job; the client is shared by concurrent jobs) reach this pass's list.
`recording` collects them for one pass of one order and inserts them in one batch when the
pass ends, however it ends (returned, failed, raised). A crash of the worker process itself
loses at most the calls of the pass that was running: they were only in its memory.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal

import structlog

from bitloot.fulfillment import repository
from bitloot.kinguin.client import KinguinCall, observe_calls
from bitloot.resources import Resources

log = structlog.get_logger(__name__)

# The metrics label of a refusal; the row names Kinguin's error kind instead.
_REFUSED = "rejected"


def to_row(call: KinguinCall) -> repository.KinguinCallRow:
    """A reported attempt as a row: a refusal's outcome is Kinguin's error kind."""
    outcome = call.outcome
    if outcome == _REFUSED and call.error_code:
        outcome = call.error_code
    return repository.KinguinCallRow(
        endpoint=call.endpoint,
        attempt=call.attempt,
        outcome=outcome,
        http_status=call.http_status,
        error_code=call.error_code,
        latency_ms=Decimal(f"{call.seconds * 1000:.3f}"),
    )


@asynccontextmanager
async def recording(
    res: Resources, order_id: uuid.UUID, *, replacement_id: int | None = None
) -> AsyncIterator[None]:
    """Record every Kinguin call made inside the block for `order_id` (and the key
    replacement `replacement_id`, if the calls are for one), in one insert at the end. A
    failure to insert is logged and never hides the pass's own outcome or error."""
    calls: list[KinguinCall] = []
    try:
        with observe_calls(calls.append):
            yield
    finally:
        if calls:
            try:
                async with res.pool.connection() as conn, conn.transaction():
                    await repository.insert_kinguin_calls(
                        conn, order_id, [to_row(c) for c in calls], replacement_id
                    )
            except Exception:
                log.exception("fulfillment.kinguin_calls_not_recorded", calls=len(calls))
