"""The fulfillment domain's jobs: `fulfill_order`, `replace_key` and the periodic key expiry.

Thin: each job takes its process's resources and calls the service, which holds the rules.
"""

from __future__ import annotations

import uuid

import psycopg
import structlog
from procrastinate import JobContext, RetryStrategy

from bitloot.fulfillment import replace, service
from bitloot.kinguin.errors import KinguinRetryableError
from bitloot.queue import FULFILLMENT_QUEUE, MAINTENANCE_QUEUE, queue_app
from bitloot.resources import current
from bitloot.storage.base import StorageError

log = structlog.get_logger(__name__)

MAX_ATTEMPTS = 8
RETRYABLE = (KinguinRetryableError, StorageError, psycopg.OperationalError)


@queue_app.task(
    name=service.FULFILL_TASK,
    queue=FULFILLMENT_QUEUE,
    pass_context=True,
    retry=RetryStrategy(
        max_attempts=MAX_ATTEMPTS, exponential_wait=2, retry_exceptions=set(RETRYABLE)
    ),
)
async def fulfill_order(context: JobContext, order_id: str) -> None:
    """Move a paid order towards `fulfilled` (`service.run_fulfillment`); after the last
    retryable failure the order is marked failed for an admin, never left hanging."""
    res = current()
    oid = uuid.UUID(order_id)
    structlog.contextvars.bind_contextvars(order_id=order_id, job_id=context.job.id)
    try:
        await service.run_fulfillment(res, oid)
    except RETRYABLE as exc:
        if context.job.attempts + 1 >= MAX_ATTEMPTS:
            reason = f"gave up after {MAX_ATTEMPTS} attempts: {type(exc).__name__}"
            await service.fail(res, oid, reason)
            return
        log.warning("fulfillment.retry", error=type(exc).__name__, attempt=context.job.attempts)
        raise
    finally:
        structlog.contextvars.unbind_contextvars("order_id", "job_id")


@queue_app.task(
    name=replace.REPLACE_TASK,
    queue=FULFILLMENT_QUEUE,
    pass_context=True,
    retry=RetryStrategy(
        max_attempts=MAX_ATTEMPTS, exponential_wait=2, retry_exceptions=set(RETRYABLE)
    ),
)
async def replace_key(context: JobContext, replacement_id: int) -> None:
    """Buy, store and deliver one key replacement (`replace.run_replacement`); after the
    last retryable failure the replacement is failed for an admin, never left hanging."""
    res = current()
    structlog.contextvars.bind_contextvars(replacement_id=replacement_id, job_id=context.job.id)
    try:
        await replace.run_replacement(res, replacement_id)
    except RETRYABLE as exc:
        if context.job.attempts + 1 >= MAX_ATTEMPTS:
            reason = f"gave up after {MAX_ATTEMPTS} attempts: {type(exc).__name__}"
            await replace.fail_replacement(res, replacement_id, reason)
            return
        log.warning("replacement.retry", error=type(exc).__name__, attempt=context.job.attempts)
        raise
    finally:
        structlog.contextvars.unbind_contextvars("replacement_id", "job_id")


@queue_app.periodic(cron="17 * * * *", periodic_id="expire_keys")
@queue_app.task(name="expire_keys", queue=MAINTENANCE_QUEUE, queueing_lock="expire_keys")
async def expire_keys(timestamp: int) -> int:
    """Mark keys past their retention expired, then delete their ciphertexts."""
    return await service.expire_keys(current())
