"""The fulfillment job: buy from Kinguin once, wait for keys without blocking, store them.

`fulfill_order` is idempotent and always deferred with `lock=order:<id>`, so jobs for one
order run one at a time and any number of them (IPN, Kinguin webhook, poll, reconciler,
admin retry, a retry after a crash) converge on the same result: one Kinguin purchase, one
set of key rows, one delivery email.
"""

from __future__ import annotations

import uuid
from typing import Any

import procrastinate
import psycopg
import structlog
from procrastinate import JobContext, RetryStrategy

from bitloot.chaos import crash_point
from bitloot.db.connect import set_actor
from bitloot.fulfillment import service
from bitloot.fulfillment.collect import store_keys
from bitloot.kinguin.errors import KinguinPermanentError, KinguinRetryableError
from bitloot.kinguin.models import Order, OrderProductRequest
from bitloot.queue import FULFILLMENT_QUEUE, queue_app
from bitloot.runtime import Runtime, get_runtime
from bitloot.storage.base import StorageError

log = structlog.get_logger(__name__)

MAX_ATTEMPTS = 8
RETRYABLE = (KinguinRetryableError, StorageError, psycopg.OperationalError)
MAX_POLL_DELAY = 300.0


def fulfillment_lock(order_id: uuid.UUID | str) -> str:
    """The procrastinate lock that serialises every job of one order."""
    return f"order:{order_id}"


async def defer_fulfillment(
    conn: psycopg.AsyncConnection[Any],
    order_id: uuid.UUID,
    *,
    delay: float | None = None,
    poll: bool = False,
) -> None:
    """Enqueue `fulfill_order` on the caller's connection, inside its transaction.

    `poll=True` adds a queueing lock (at most one waiting poll job per order); a clash
    raises `AlreadyEnqueued` and aborts the transaction, so callers wrap it in a savepoint.
    """
    options: dict[str, Any] = {"connection": conn, "lock": fulfillment_lock(order_id)}
    if delay is not None:
        options["schedule_in"] = {"seconds": max(1, round(delay))}
    if poll:
        options["queueing_lock"] = f"poll:{order_id}"
    await fulfill_order.configure(**options).defer_async(order_id=str(order_id))


@queue_app.task(
    name="fulfill_order",
    queue=FULFILLMENT_QUEUE,
    pass_context=True,
    retry=RetryStrategy(
        max_attempts=MAX_ATTEMPTS, exponential_wait=2, retry_exceptions=set(RETRYABLE)
    ),
)
async def fulfill_order(context: JobContext, order_id: str) -> None:
    """Move a paid order towards `fulfilled`; see the module docstring."""
    rt = get_runtime()
    oid = uuid.UUID(order_id)
    structlog.contextvars.bind_contextvars(order_id=order_id, job_id=context.job.id)
    try:
        await run_fulfillment(rt, oid)
    except RETRYABLE as exc:
        if context.job.attempts + 1 >= MAX_ATTEMPTS:
            await _fail(rt, oid, f"gave up after {MAX_ATTEMPTS} attempts: {type(exc).__name__}")
            return
        log.warning("fulfillment.retry", error=type(exc).__name__, attempt=context.job.attempts)
        raise
    finally:
        structlog.contextvars.unbind_contextvars("order_id", "job_id")


async def run_fulfillment(rt: Runtime, order_id: uuid.UUID) -> None:
    """One pass of the pipeline; returns when the order is done, failed or waiting."""
    async with rt.pool.connection() as conn, conn.transaction():
        await set_actor(conn, "worker")
        state = await service.lock_order(conn, order_id)
        if state is None or state.status != "paid":
            log.info("fulfillment.skipped", status=state.status if state else None)
            return
        if state.fulfillment_status not in ("pending", "processing"):
            log.info("fulfillment.skipped", fulfillment_status=state.fulfillment_status)
            return
        await service.start_processing(conn, order_id)
        recorded = await service.kinguin_order_for(conn, order_id)
        lines = await service.order_lines(conn, order_id)
        may_exist = state.kinguin_placement_started_at is not None
        if recorded is None:
            # Committed before we buy: a crash after buying is then recovered by lookup.
            await service.mark_placement_started(conn, order_id)

    fresh: Order | None = None
    if recorded is None:
        fresh = await _place_once(rt, order_id, lines, may_exist=may_exist)
        if fresh is None:
            return
        kinguin_order_id = fresh.order_id
    else:
        kinguin_order_id = recorded.kinguin_order_id

    try:
        # An order we have just placed or found needs no second read.
        kinguin_order = fresh or await rt.kinguin.get_order(kinguin_order_id)
        keys = await rt.kinguin.get_keys(kinguin_order_id)
    except KinguinPermanentError as exc:
        # e.g. Authorization or OrderNotFound: retrying cannot help, an admin must look.
        await _fail(rt, order_id, f"Kinguin refused to show order {kinguin_order_id}: {exc.kind}")
        return
    if kinguin_order.status in ("canceled", "refunded"):
        await _fail(
            rt,
            order_id,
            f"Kinguin order {kinguin_order_id} was {kinguin_order.status}",
            kinguin_status=kinguin_order.status,
        )
        return
    if kinguin_order.status != "completed" and len(keys) < kinguin_order.key_count:
        await _wait_for_keys(rt, order_id, kinguin_order)
        crash_point("while_waiting")
        return
    # Say so before the slow part (encrypt, upload): the Kinguin webhook that is likely on
    # its way then sees the keys are being collected and enqueues no second job.
    async with rt.pool.connection() as conn:
        await service.update_kinguin_status(conn, order_id, "completed")
    await store_keys(rt, order_id, kinguin_order, keys)


async def _place_once(
    rt: Runtime, order_id: uuid.UUID, lines: list[service.OrderLine], *, may_exist: bool
) -> Order | None:
    """Find the order a previous attempt placed, or place it; record it. None: failed."""
    existing = await rt.kinguin.find_order_by_external_id(str(order_id)) if may_exist else None
    if existing is not None:
        log.info("kinguin.order_recovered", kinguin_order_id=existing.order_id)
        placed = existing
    else:
        products = [
            OrderProductRequest(
                product_id=line.product_id,
                qty=line.qty,
                price=line.max_cost,
                key_type="text" if line.text_only else None,
            )
            for line in lines
        ]
        crash_point("before_place")
        try:
            placed = await rt.kinguin.place_order(products, str(order_id))
        except KinguinPermanentError as exc:
            await _fail(rt, order_id, f"Kinguin refused the order: {exc.kind}")
            return None
        log.info("kinguin.order_placed", kinguin_order_id=placed.order_id)
        crash_point("after_place")
    async with rt.pool.connection() as conn, conn.transaction():
        await service.record_kinguin_order(
            conn, order_id, placed.order_id, placed.status, placed.payment_price
        )
    return placed


async def _wait_for_keys(rt: Runtime, order_id: uuid.UUID, kinguin_order: Order) -> None:
    """Re-defer this order's job with backoff, or fail it after too many polls."""
    async with rt.pool.connection() as conn, conn.transaction():
        await set_actor(conn, "worker")
        await service.update_kinguin_status(conn, order_id, kinguin_order.status)
        polls = await service.bump_polls(conn, order_id)
        if polls > rt.settings.kinguin_max_polls:
            await service.mark_failed(
                conn, order_id, f"keys not delivered after {polls - 1} polls of Kinguin"
            )
            log.warning("fulfillment.failed", reason="poll limit")
            return
        delay = min(rt.settings.kinguin_poll_interval * 2 ** (polls - 1), MAX_POLL_DELAY)
        try:
            # One scheduled poll per order at most: a job started by a webhook that finds
            # keys still missing must not start a second chain of polls.
            async with conn.transaction():
                await defer_fulfillment(conn, order_id, delay=delay, poll=True)
        except procrastinate.exceptions.AlreadyEnqueued:
            log.info("fulfillment.poll_already_scheduled")
            return
    log.info("fulfillment.waiting_for_keys", polls=polls, next_in=delay)


async def _fail(
    rt: Runtime, order_id: uuid.UUID, reason: str, *, kinguin_status: str | None = None
) -> None:
    async with rt.pool.connection() as conn, conn.transaction():
        await set_actor(conn, "worker", reason)
        if kinguin_status is not None:
            await service.update_kinguin_status(conn, order_id, kinguin_status)
        await service.mark_failed(conn, order_id, reason)
    log.warning("fulfillment.failed", reason=reason)
