"""The queue's own periodic jobs: retry the jobs of dead workers, prune old jobs.

Each runs on the maintenance queue with a queueing lock, so a slow run is never stacked
behind a second copy of itself however many workers there are.
"""

from __future__ import annotations

from typing import Any

import structlog
from procrastinate import JobContext
from procrastinate.exceptions import UniqueViolation
from procrastinate.jobs import Status

from bitloot.queue import MAINTENANCE_QUEUE, queue_app

log = structlog.get_logger(__name__)

# A worker sends a heartbeat every 2 s (bitloot.worker); five missed ones mean it is gone.
STALLED_AFTER_SECONDS = 10.0


# croniter puts the seconds field last: every 5 seconds.
@queue_app.periodic(cron="* * * * * */5", periodic_id="stalled")
@queue_app.task(name="retry_stalled_jobs", queue=MAINTENANCE_QUEUE, queueing_lock="stalled",
                pass_context=True)  # fmt: skip
async def retry_stalled_jobs(context: JobContext, timestamp: int) -> int:
    """Put back in the queue the jobs of workers that stopped sending heartbeats."""
    manager = context.app.job_manager
    stalled = list(await manager.get_stalled_jobs(seconds_since_heartbeat=STALLED_AFTER_SECONDS))
    for job in stalled:
        try:
            await manager.retry_job(job)
        except UniqueViolation:
            # A job with the same queueing lock is already waiting (a deliver_webhooks of
            # the same endpoint and order, queued while this one ran): it does this one's
            # work, and the lock allows one waiting job only. This one ends, aborted.
            await manager.finish_job(job, status=Status.ABORTED, delete_job=False)
            log.warning("job.stalled_superseded", job_id=job.id, task=job.task_name)
            continue
        log.warning("job.stalled_retried", job_id=job.id, task=job.task_name)
    return len(stalled)


@queue_app.periodic(cron="41 3 * * *", periodic_id="prune_jobs")
@queue_app.task(name="prune_jobs", queue=MAINTENANCE_QUEUE, queueing_lock="prune_jobs",
                pass_context=True)  # fmt: skip
async def prune_jobs(context: JobContext, timestamp: int) -> None:
    """Delete finished jobs older than a week (failed ones stay for a month, for admins)."""
    manager: Any = context.app.job_manager
    await manager.delete_old_jobs(nb_hours=24 * 7)
    await manager.delete_old_jobs(nb_hours=24 * 30, include_failed=True, include_cancelled=True)
