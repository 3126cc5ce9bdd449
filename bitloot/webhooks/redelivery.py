"""An admin's redelivery: one event to an endpoint again, or every event it failed since a
time.

The deliveries go back to `pending`, due now, their attempts kept (`webhook_attempts`
keeps every earlier try) and a new round of the retry schedule ahead of them; the jobs of
their (endpoint, order) pairs are queued in the caller's transaction (a job waiting for a
later retry is made due now). One event may be redelivered whatever its state (a receiver
that lost an event it had accepted asks for it again); `since` takes only failed ones. An
endpoint that is disabled keeps them pending until it is enabled.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import structlog

from bitloot.webhooks import repository
from bitloot.webhooks.delivery import requeue_pair_now
from bitloot.webhooks.endpoints import EndpointNotFound
from bitloot.webhooks.repository import Conn

log = structlog.get_logger(__name__)


class DeliveryNotFound(LookupError):
    """The endpoint was never sent this event (no such msg_id for it)."""


async def redeliver(
    conn: Conn,
    endpoint_id: uuid.UUID,
    *,
    msg_id: str | None = None,
    since: datetime | None = None,
) -> int:
    """Put back to pending the endpoint's delivery of `msg_id`, or its failed deliveries of
    events since `since`, and queue their jobs; how many deliveries. `EndpointNotFound` for
    an endpoint not registered (or removed), `DeliveryNotFound` for an unknown `msg_id`."""
    if (msg_id is None) == (since is None):
        raise ValueError("redeliver one message or the failed ones since a time")
    # Locked: a concurrent removal fails the pending deliveries after this, not before.
    if await repository.registered_endpoint(conn, endpoint_id, lock=True) is None:
        raise EndpointNotFound(str(endpoint_id))
    if msg_id is not None:
        orders = await repository.redeliver_message(conn, endpoint_id, msg_id)
        if not orders:
            raise DeliveryNotFound(msg_id)
    else:
        assert since is not None
        orders = await repository.redeliver_failed_since(conn, endpoint_id, since)
    for order_id in sorted(set(orders)):
        await requeue_pair_now(conn, endpoint_id, order_id)
    log.info("webhook.redelivery_queued", endpoint_id=str(endpoint_id), msg_id=msg_id,
             since=since.isoformat() if since else None, deliveries=len(orders))  # fmt: skip
    return len(orders)
