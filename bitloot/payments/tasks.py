"""The payments domain's periodic job: the reconciler."""

from __future__ import annotations

from bitloot.payments import service
from bitloot.queue import MAINTENANCE_QUEUE, queue_app
from bitloot.resources import current


@queue_app.periodic(cron="* * * * *", periodic_id="reconcile")
@queue_app.task(name="reconcile", queue=MAINTENANCE_QUEUE, queueing_lock="reconcile")
async def reconcile(timestamp: int) -> dict[str, int]:
    """Push on paid orders that stalled, re-check unfinished payments, expire abandoned orders."""
    return await service.reconcile(current())
