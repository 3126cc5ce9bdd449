"""Periodic jobs: retry stalled jobs, reconcile with the providers, expire keys, prune.

Each runs on the maintenance queue with a queueing lock, so a slow run is never stacked
behind a second copy of itself however many workers there are.
"""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from procrastinate import JobContext

from bitloot.db.connect import set_actor
from bitloot.db.queries import QuerySet
from bitloot.fulfillment.tasks import defer_fulfillment
from bitloot.payments.ipn import PaymentPolicy, apply_ipn
from bitloot.payments.models import Ipn
from bitloot.payments.nowpayments import NowPaymentsError
from bitloot.queue import MAINTENANCE_QUEUE, queue_app
from bitloot.runtime import Runtime, get_runtime

Q = QuerySet("bitloot.fulfillment", "maintenance_queries.sql")
log = structlog.get_logger(__name__)

STALLED_AFTER_SECONDS = 10.0
BATCH = 100


# croniter puts the seconds field last: every 5 seconds.
@queue_app.periodic(cron="* * * * * */5", periodic_id="stalled")
@queue_app.task(name="retry_stalled_jobs", queue=MAINTENANCE_QUEUE, queueing_lock="stalled",
                pass_context=True)  # fmt: skip
async def retry_stalled_jobs(context: JobContext, timestamp: int) -> int:
    """Put back in the queue the jobs of workers that stopped sending heartbeats."""
    manager = context.app.job_manager
    stalled = list(await manager.get_stalled_jobs(seconds_since_heartbeat=STALLED_AFTER_SECONDS))
    for job in stalled:
        await manager.retry_job(job)
        log.warning("job.stalled_retried", job_id=job.id, task=job.task_name)
    return len(stalled)


@queue_app.periodic(cron="* * * * *", periodic_id="reconcile")
@queue_app.task(name="reconcile", queue=MAINTENANCE_QUEUE, queueing_lock="reconcile")
async def reconcile(timestamp: int) -> dict[str, int]:
    """Push on paid orders that stalled, re-check unfinished payments, expire abandoned orders."""
    return await run_reconcile(get_runtime())


async def run_reconcile(rt: Runtime) -> dict[str, int]:
    """One reconciliation pass (the periodic task's body, callable from tests)."""
    minutes = rt.settings.reconcile_after_minutes
    async with rt.pool.connection() as conn, conn.transaction():
        await set_actor(conn, "reconciler")
        cur = await conn.execute(Q["stuck_paid_orders"], {"minutes": minutes, "limit": BATCH})
        stuck = [row[0] for row in await cur.fetchall()]
        for order_id in stuck:
            await defer_fulfillment(conn, order_id)
        cur = await conn.execute(Q["expire_abandoned_orders"])
        expired = len(await cur.fetchall())
    if stuck:
        log.warning("reconcile.orders_requeued", count=len(stuck))
    rechecked = await _recheck_payments(rt, minutes)
    return {"requeued": len(stuck), "expired": expired, "payments_rechecked": rechecked}


async def _recheck_payments(rt: Runtime, minutes: int) -> int:
    if rt.nowpayments is None:
        return 0
    async with rt.pool.connection() as conn:
        cur = await conn.execute(Q["stale_payments"], {"minutes": minutes, "limit": BATCH})
        payment_ids = [str(row[0]) for row in await cur.fetchall()]
    policy = PaymentPolicy(paid_on=rt.settings.paid_on, tolerance=rt.settings.payment_tolerance)
    for payment_id in payment_ids:
        try:
            status = await rt.nowpayments.get_payment(payment_id)
        except NowPaymentsError as exc:
            log.warning("reconcile.payment_check_failed", payment_id=payment_id, code=exc.code)
            continue
        ipn = Ipn.model_validate(status.model_dump(mode="json"))
        async with rt.pool.connection() as conn, conn.transaction():
            await set_actor(conn, "reconciler", f"NOWPayments says {ipn.payment_status}")
            # Stored and applied exactly like an IPN, so a later IPN saying the same thing
            # is recognised as a duplicate.
            result = await apply_ipn(
                conn,
                ipn,
                raw_body=status.model_dump_json(),
                signature_variant="api",
                policy=policy,
                enqueue_fulfillment=defer_fulfillment,
            )
            await conn.execute(Q["touch_payment"], {"payment_id": payment_id})
        log.info("reconcile.payment_checked", payment_id=payment_id, outcome=result.outcome)
    return len(payment_ids)


@queue_app.periodic(cron="17 * * * *", periodic_id="expire_keys")
@queue_app.task(name="expire_keys", queue=MAINTENANCE_QUEUE, queueing_lock="expire_keys")
async def expire_keys(timestamp: int) -> int:
    """Mark keys past their retention expired, then delete their ciphertexts."""
    return await run_expire_keys(get_runtime())


async def run_expire_keys(rt: Runtime) -> int:
    """Expire and delete; returns how many objects were deleted."""
    async with rt.pool.connection() as conn, conn.transaction():
        await conn.execute(Q["expire_keys"])
    deleted = 0
    while True:
        async with rt.pool.connection() as conn:
            cur = await conn.execute(Q["expired_objects"], {"limit": BATCH})
            rows: list[tuple[uuid.UUID, str]] = await cur.fetchall()
        if not rows:
            return deleted
        for row_id, object_key in rows:
            await rt.storage.delete(object_key)  # first: a crash here is retried next run
            async with rt.pool.connection() as conn:
                await conn.execute(Q["mark_deleted"], {"id": row_id})
            deleted += 1
        log.info("keys.expired_deleted", count=len(rows))


@queue_app.periodic(cron="41 3 * * *", periodic_id="prune_jobs")
@queue_app.task(name="prune_jobs", queue=MAINTENANCE_QUEUE, queueing_lock="prune_jobs",
                pass_context=True)  # fmt: skip
async def prune_jobs(context: JobContext, timestamp: int) -> None:
    """Delete finished jobs older than a week (failed ones stay for a month, for admins)."""
    manager: Any = context.app.job_manager
    await manager.delete_old_jobs(nb_hours=24 * 7)
    await manager.delete_old_jobs(nb_hours=24 * 30, include_failed=True, include_cancelled=True)
