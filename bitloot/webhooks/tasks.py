"""The webhooks queue's jobs: `deliver_webhooks` (one per endpoint and order, queued by the
database when an event is written; see `delivery`) and a sweep that re-queues pairs whose
job is gone."""

from __future__ import annotations

import uuid

import structlog

from bitloot.queue import WEBHOOKS_QUEUE, queue_app
from bitloot.resources import current
from bitloot.webhooks import repository
from bitloot.webhooks.delivery import DELIVER_TASK, drain_pair

log = structlog.get_logger(__name__)


# No procrastinate retry: every attempt's outcome is on the delivery row, which schedules
# its own retry. A job that fails on something else (the database) leaves its deliveries
# pending, and `requeue_stranded_webhooks` queues the pair again.
@queue_app.task(name=DELIVER_TASK, queue=WEBHOOKS_QUEUE, pass_context=False)
async def deliver_webhooks(endpoint_id: str, order_id: str) -> int:
    """Deliver the endpoint's due events about the order, in order; attempts made."""
    return await drain_pair(current(), uuid.UUID(endpoint_id), uuid.UUID(order_id))


@queue_app.periodic(cron="* * * * *", periodic_id="webhooks_stranded")
@queue_app.task(name="requeue_stranded_webhooks", queue=WEBHOOKS_QUEUE,
                queueing_lock="requeue_stranded_webhooks", pass_context=False)  # fmt: skip
async def requeue_stranded_webhooks(timestamp: int) -> int:
    """Queue the job of every (endpoint, order) whose delivery is overdue by a minute with
    no job waiting or running for it; how many pairs."""
    async with current().pool.connection() as conn, conn.transaction():
        pairs = await repository.requeue_stranded_pairs(conn)
    if pairs:
        log.warning("webhook.stranded_requeued", pairs=pairs)
    return pairs
