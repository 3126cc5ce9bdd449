"""The fulfillment domain: a paid order becomes delivered keys, exactly once.

`run_fulfillment` is one pass of the pipeline for one order. It runs inside the
`fulfill_order` job, always deferred with `lock=order:<id>` (`defer_fulfillment`), so passes
for one order run one at a time, and any number of them (IPN, Kinguin webhook, poll,
reconciler, admin retry, a retry after a crash) converge on one Kinguin purchase
(`purchase`), one set of key rows and one delivery email (`collect`). Waiting for keys never
blocks a worker: the pass re-defers itself with backoff, at most one poll per order.
"""

from __future__ import annotations

import uuid
from typing import Any

import procrastinate
import psycopg
import structlog

from bitloot.chaos import crash_point
from bitloot.db.connect import set_actor, set_reason
from bitloot.delivery.service import queue_notice
from bitloot.fulfillment import calls, purchase, replace, repository, returns
from bitloot.fulfillment.collect import store_keys
from bitloot.kinguin.errors import KinguinPermanentError
from bitloot.kinguin.models import Order
from bitloot.queue import queue_app
from bitloot.resources import Resources

log = structlog.get_logger(__name__)
Conn = psycopg.AsyncConnection[Any]

# Key replacements (`replace`), for other domains: request one, list an order's.
Replacement = replace.Replacement
ReplacementNotFound = replace.ReplacementNotFound
NotReplaceable = replace.NotReplaceable
request_replacement = replace.request_replacement
replacements_of = replace.replacements_of

FULFILL_TASK = "fulfill_order"
MAX_POLL_DELAY = 300.0
BATCH = 100
NO_EVIDENCE = (
    "no evidence of payment: no final payment covers the total and no admin accepted it "
    "(bitloot_payment_evidence); nothing bought"
)


def fulfillment_lock(order_id: uuid.UUID | str) -> str:
    """The procrastinate lock that serialises every job of one order."""
    return f"order:{order_id}"


async def defer_fulfillment(
    conn: Conn, order_id: uuid.UUID, *, delay: float | None = None, poll: bool = False
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
    # By name: the task lives in `tasks`, which calls this module (no import cycle).
    deferrer = queue_app.configure_task(FULFILL_TASK, allow_unknown=False, **options)
    await deferrer.defer_async(order_id=str(order_id))


async def revoke_keys(conn: Conn, order_id: uuid.UUID, reason: str) -> int:
    """Revoke the order's live keys (reason `refunded` or `replaced`) in the caller's
    transaction: download-link serves them no more; their objects go with the retention
    rule (`expire_keys`). How many were revoked."""
    return await returns.revoke_keys(conn, order_id, reason)


async def defer_key_return(conn: Conn, order_id: uuid.UUID) -> None:
    """Enqueue the Kinguin key return of a refunded order on the caller's connection
    (`returns.return_kinguin_keys`), under the order's lock so it never runs beside a
    fulfillment pass."""
    deferrer = queue_app.configure_task(
        returns.RETURN_TASK,
        allow_unknown=False,
        connection=conn,
        lock=fulfillment_lock(order_id),
    )
    await deferrer.defer_async(order_id=str(order_id))


async def run_fulfillment(res: Resources, order_id: uuid.UUID) -> None:
    """One pass of the pipeline; returns when the order is done, failed or waiting.

    Every Kinguin call of the pass becomes a `kinguin_calls` row when it ends, however it
    ends (`calls.recording`; a process crash loses at most this pass's calls)."""
    async with calls.recording(res, order_id):
        await _run_pass(res, order_id)


async def _run_pass(res: Resources, order_id: uuid.UUID) -> None:
    # One pipeline for the transaction: the lock and every read go out in one round trip
    # (`begin_pass`), the writes and the COMMIT in one more, instead of nine round trips.
    async with res.pool.connection() as conn, conn.pipeline(), conn.transaction():
        start = await repository.begin_pass(conn, order_id, "worker")
        state, recorded, lines = start.state, start.recorded, start.lines
        if state is None or state.status != "paid":
            log.info("fulfillment.skipped", status=state.status if state else None)
            return
        if state.fulfillment_status not in ("pending", "processing"):
            log.info("fulfillment.skipped", fulfillment_status=state.fulfillment_status)
            return
        if recorded is None and start.evidence is None:
            # The orders trigger let it become paid only with evidence; a payment refunded
            # since, or a stricter policy, may have taken it away. Nothing is bought without.
            reason = NO_EVIDENCE
            await set_reason(conn, reason)
            await repository.mark_failed(conn, order_id, reason)
            log.warning("fulfillment.failed", reason=reason)
            return
        await repository.start_processing(conn, order_id)
        may_exist = state.kinguin_placement_started_at is not None
        if recorded is None:
            # Committed before we buy (the pipeline is synced when this block ends, and
            # the purchase comes after it): a crash after buying is recovered by lookup.
            await purchase.mark_started(conn, order_id)

    fresh: Order | None = None
    if recorded is None:
        try:
            fresh = await purchase.place_once(res, order_id, lines, may_exist=may_exist)
        except purchase.PurchaseRefused as exc:
            await fail(res, order_id, str(exc))
            return
        kinguin_order_id = fresh.order_id
    else:
        kinguin_order_id = recorded.kinguin_order_id
    await _collect(res, order_id, kinguin_order_id, fresh)


async def _collect(
    res: Resources, order_id: uuid.UUID, kinguin_order_id: str, fresh: Order | None
) -> None:
    kinguin = res.kinguin_client
    try:
        # An order we have just placed or found needs no second read.
        kinguin_order = fresh or await kinguin.get_order(kinguin_order_id)
        keys = await kinguin.get_keys(kinguin_order_id)
    except KinguinPermanentError as exc:
        # e.g. Authorization or OrderNotFound: retrying cannot help, an admin must look.
        await fail(res, order_id, f"Kinguin refused to show order {kinguin_order_id}: {exc.kind}")
        return
    if kinguin_order.status in ("canceled", "refunded"):
        await fail(
            res,
            order_id,
            f"Kinguin order {kinguin_order_id} was {kinguin_order.status}",
            kinguin_status=kinguin_order.status,
        )
        return
    if kinguin_order.status != "completed" and len(keys) < kinguin_order.key_count:
        await _wait_for_keys(res, order_id, kinguin_order)
        crash_point("while_waiting")
        return
    # Say so before the slow part (encrypt, upload): the Kinguin webhook that is likely on
    # its way then sees the keys are being collected and enqueues no second job.
    async with res.pool.connection() as conn:
        await repository.update_kinguin_status(conn, order_id, "completed")
    await store_keys(res, order_id, kinguin_order, keys)


async def _wait_for_keys(res: Resources, order_id: uuid.UUID, kinguin_order: Order) -> None:
    """Re-defer this order's job with backoff, or fail it after too many polls."""
    settings = res.settings
    async with res.pool.connection() as conn, conn.transaction():
        await set_actor(conn, "worker")
        await repository.update_kinguin_status(conn, order_id, kinguin_order.status)
        polls = await repository.bump_polls(conn, order_id)
        if polls > settings.kinguin_max_polls:
            reason = f"keys not delivered after {polls - 1} polls of Kinguin"
            await set_reason(
                conn,
                f"{reason} order {kinguin_order.order_id} (limit BITLOOT_KINGUIN_MAX_POLLS="
                f"{settings.kinguin_max_polls})",
            )
            await _give_up(conn, order_id, reason)
            return
        delay = min(settings.kinguin_poll_interval * 2 ** (polls - 1), MAX_POLL_DELAY)
        try:
            # One scheduled poll per order at most: a job started by a webhook that finds
            # keys still missing must not start a second chain of polls.
            async with conn.transaction():
                await defer_fulfillment(conn, order_id, delay=delay, poll=True)
        except procrastinate.exceptions.AlreadyEnqueued:
            log.info("fulfillment.poll_already_scheduled")
            return
    log.info("fulfillment.waiting_for_keys", polls=polls, next_in=delay)


async def fail(
    res: Resources, order_id: uuid.UUID, reason: str, *, kinguin_status: str | None = None
) -> None:
    """End the order's fulfillment in `failed` with a reason an admin can read."""
    async with res.pool.connection() as conn, conn.transaction():
        await set_actor(conn, "worker", reason)
        if kinguin_status is not None:
            await repository.update_kinguin_status(conn, order_id, kinguin_status)
        await _give_up(conn, order_id, reason)


async def _give_up(conn: Conn, order_id: uuid.UUID, reason: str) -> None:
    """Kinguin could not deliver: `failed` for an admin (retry or refund), and the customer
    told in the same transaction that keys or a refund will follow (once per order).

    A failure for want of payment evidence is not announced: the customer may not have
    paid at all, and an admin decides."""
    await repository.mark_failed(conn, order_id, reason)
    await queue_notice(conn, order_id, "undeliverable")
    log.warning("fulfillment.failed", reason=reason)


async def retry_failed(conn: Conn, order_id: uuid.UUID) -> tuple[bool, str | None]:
    """Move a paid order's failed fulfillment back to `pending`, restart its Kinguin polling
    and queue `fulfill_order`: (whether it moved, the Kinguin order id if one exists).
    The caller holds the order's row lock and owns the transaction."""
    if not await repository.requeue_failed(conn, order_id):
        return False, None
    # The job also resets polls when it starts; doing it here makes the retry visible at once.
    kinguin_order_id = await repository.reset_kinguin_polls(conn, order_id)
    await defer_fulfillment(conn, order_id)
    return True, kinguin_order_id


async def requeue_stuck_orders(conn: Conn, minutes: int) -> int:
    """Queue `fulfill_order` again for paid orders stuck `minutes` with no job; how many.

    An order nothing proves paid any more (`bitloot_payment_evidence`) and not yet bought
    from Kinguin is not queued: its fulfillment fails with that reason, for an admin."""
    stuck = await repository.stuck_paid_orders(conn, minutes, BATCH)
    requeued = 0
    for order in stuck:
        if order.evidence is None and not order.bought:
            async with conn.transaction():
                await set_actor(conn, "reconciler", NO_EVIDENCE)
                await repository.mark_failed(conn, order.id, NO_EVIDENCE)
            log.warning("reconcile.no_payment_evidence", order_id=str(order.id))
            continue
        await defer_fulfillment(conn, order.id)
        requeued += 1
    if requeued:
        log.warning("reconcile.orders_requeued", count=requeued)
    return requeued


async def expire_keys(res: Resources) -> int:
    """Mark keys past their retention expired, then delete their ciphertexts; how many
    objects were deleted. The delete comes first: a crash is retried by the next run."""
    async with res.pool.connection() as conn, conn.transaction():
        await repository.expire_keys(conn)
    deleted = 0
    while True:
        async with res.pool.connection() as conn:
            rows = await repository.expired_objects(conn, BATCH)
        if not rows:
            return deleted
        for row_id, object_key in rows:
            await res.storage.delete(object_key)
            async with res.pool.connection() as conn:
                await repository.mark_deleted(conn, row_id)
            deleted += 1
        log.info("keys.expired_deleted", count=len(rows))
