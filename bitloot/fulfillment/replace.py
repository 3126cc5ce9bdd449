"""Replacing a faulty key: one new key bought from Kinguin exactly once, delivered like the
first ones, the faulty key revoked, the customer told.

1. **The request** (`request_replacement`, in the admin's one transaction): the order must
   be fulfilled and the key live; one `key_replacements` row per faulty key (a repeated
   request finds it), numbered per order (the admin domain audits it), and the
   `replace_key` job deferred.
2. **The purchase** (`run_replacement`, one pass of the job; passes of one replacement are
   serialised by the procrastinate lock `replacement:<id>`): exactly the first purchase's
   rule (`purchase`), under the replacement's own orderExternalId `<order id>-r<number>`:
   `placement_started_at` is committed before buying; a pass that finds it set with no
   Kinguin order recorded searches Kinguin by that id instead of buying; the order found or
   placed is recorded on the row (`placed`).
3. **The key**: polled with backoff like the first purchase (the Kinguin webhook naming the
   replacement's order only defers the job again, `kinguin_webhook`); sealed and uploaded
   like every key (`collect.seal_and_upload`); then in one transaction the new
   `key_delivery_logs` row (`replaces_key_id`), the old key revoked (`replaced`), the
   replacement `delivered`, and the `key_replaced` notice queued.

Kinguin refusing, canceling or never delivering ends the replacement `failed` with the
reason, for an admin: the order stays fulfilled and the faulty key stays live. A
replacement whose order was refunded meanwhile is failed, never delivered.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import procrastinate
import psycopg
import structlog
from psycopg.rows import class_row

from bitloot.db.queries import QuerySet
from bitloot.delivery.service import queue_notice
from bitloot.fulfillment import calls, purchase, repository
from bitloot.fulfillment.collect import seal_and_upload
from bitloot.kinguin.errors import KinguinPermanentError
from bitloot.kinguin.models import Key, Order
from bitloot.queue import queue_app
from bitloot.resources import Resources

log = structlog.get_logger(__name__)
Q = QuerySet("bitloot.fulfillment", "replace_queries.sql")
Conn = psycopg.AsyncConnection[Any]

REPLACE_TASK = "replace_key"
FINAL = ("delivered", "failed")
MAX_POLL_DELAY = 300.0


@dataclass(frozen=True)
class Replacement:
    """One `key_replacements` row, as admins see it."""

    id: int
    order_id: uuid.UUID
    key_id: str
    number: int
    status: str
    external_id: str
    kinguin_order_id: str | None
    new_key_id: str | None
    error: str | None
    admin_id: str
    reason: str
    created_at: datetime
    updated_at: datetime


class ReplacementNotFound(LookupError):
    """No such order, or the order has no such key."""


class NotReplaceable(Exception):
    """The key cannot be replaced now; `extras` say why (public)."""

    def __init__(self, message: str, extras: dict[str, Any]) -> None:
        super().__init__(message)
        self.extras = extras


@dataclass(frozen=True)
class _KeyToReplace:
    key_id: str
    revoked_at: datetime | None
    revoked_reason: str | None
    product_id: str | None
    max_cost: Decimal | None
    text_only: bool | None


@dataclass(frozen=True)
class _Job:
    id: int
    order_id: uuid.UUID
    key_id: str
    number: int
    status: str
    external_id: str
    placement_started_at: datetime | None
    kinguin_order_id: str | None
    product_id: str
    order_status: str
    key_revoked: bool
    max_cost: Decimal
    text_only: bool
    name: str


# --- 1. the request ------------------------------------------------------------------------


async def request_replacement(
    conn: Conn, order_id: uuid.UUID, key_id: str, *, admin_id: str, reason: str
) -> tuple[Replacement, bool]:
    """Record and queue the replacement of one key, in the caller's transaction (the admin
    domain audits it there): (the replacement, whether this call created it). A key
    already being replaced (or replaced) gives its replacement back, unchanged.
    `ReplacementNotFound` for an unknown order or key; `NotReplaceable` unless the order
    is fulfilled and the key live."""
    cur = await conn.execute(Q["lock_order_for_replacement"], {"order_id": order_id})
    order = await cur.fetchone()
    if order is None:
        raise ReplacementNotFound("No such order.")
    async with conn.cursor(row_factory=class_row(_KeyToReplace)) as kcur:
        await kcur.execute(Q["key_to_replace"], {"order_id": order_id, "key_id": key_id})
        key = await kcur.fetchone()
    if key is None:
        raise ReplacementNotFound("The order has no such key.")
    existing = await _replacement_of_key(conn, order_id, key_id)
    if existing is not None:
        return existing, False
    status, fulfillment_status = order
    if status != "fulfilled":
        raise NotReplaceable(
            "Only a fulfilled order's keys can be replaced.",
            {"orderStatus": status, "fulfillmentStatus": fulfillment_status},
        )
    if key.revoked_at is not None:
        raise NotReplaceable(
            f"The key was revoked ({key.revoked_reason}); only a live key can be replaced.",
            {"keyId": key_id, "revokedReason": key.revoked_reason},
        )
    if key.product_id is None:
        raise NotReplaceable(
            "The key's product is not one of the order's lines: replace it by hand.",
            {"keyId": key_id},
        )
    async with conn.cursor(row_factory=class_row(Replacement)) as rcur:
        await rcur.execute(
            Q["insert_replacement"],
            {
                "order_id": order_id,
                "key_id": key_id,
                "admin_id": admin_id,
                "reason": reason,
                "product_id": key.product_id,
            },
        )
        created = await rcur.fetchone()
    if created is None:  # cannot happen under the order's row lock
        raise NotReplaceable("The key is being replaced already.", {"keyId": key_id})
    await defer_replacement(conn, created.id)
    log.info("replacement.requested", replacement_id=created.id, number=created.number)
    return created, True


async def replacements_of(conn: Conn, order_id: uuid.UUID) -> list[Replacement] | None:
    """Every replacement of the order's keys, in the order they were asked for; None when
    there is no such order."""
    cur = await conn.execute(Q["order_exists"], {"order_id": order_id})
    if await cur.fetchone() is None:
        return None
    async with conn.cursor(row_factory=class_row(Replacement)) as rcur:
        await rcur.execute(Q["replacements_of_order"], {"order_id": order_id})
        return await rcur.fetchall()


async def _replacement_of_key(conn: Conn, order_id: uuid.UUID, key_id: str) -> Replacement | None:
    async with conn.cursor(row_factory=class_row(Replacement)) as cur:
        await cur.execute(Q["replacement_of_key"], {"order_id": order_id, "key_id": key_id})
        return await cur.fetchone()


@dataclass(frozen=True)
class EventReplacement:
    """The replacement a Kinguin order event is about."""

    id: int
    order_id: uuid.UUID
    status: str
    kinguin_order_id: str | None


async def replacement_for_event(
    conn: Conn, kinguin_order_id: str, external_id: str | None
) -> EventReplacement | None:
    """The replacement whose Kinguin order the event names (by the Kinguin order recorded,
    else by its orderExternalId), if any."""
    async with conn.cursor(row_factory=class_row(EventReplacement)) as cur:
        await cur.execute(
            Q["replacement_for_event"],
            {"kinguin_order_id": kinguin_order_id, "external_id": external_id},
        )
        return await cur.fetchone()


def replacement_lock(replacement_id: int) -> str:
    """The procrastinate lock that serialises every job of one replacement."""
    return f"replacement:{replacement_id}"


async def defer_replacement(
    conn: Conn, replacement_id: int, *, delay: float | None = None, poll: bool = False
) -> None:
    """Enqueue `replace_key` on the caller's connection, inside its transaction.

    `poll=True` adds a queueing lock (at most one waiting poll per replacement); a clash
    raises `AlreadyEnqueued` and aborts the transaction, so callers wrap it in a savepoint.
    Any other copies are harmless: a pass re-reads the row and does only what is left.
    """
    options: dict[str, Any] = {"connection": conn, "lock": replacement_lock(replacement_id)}
    if delay is not None:
        options["schedule_in"] = {"seconds": max(1, round(delay))}
    if poll:
        options["queueing_lock"] = f"replacement-poll:{replacement_id}"
    # By name: the task lives in `tasks`, which imports this module.
    deferrer = queue_app.configure_task(REPLACE_TASK, allow_unknown=False, **options)
    await deferrer.defer_async(replacement_id=replacement_id)


# --- 2. the purchase -----------------------------------------------------------------------


async def run_replacement(res: Resources, replacement_id: int) -> None:
    """One pass of the `replace_key` job; returns when delivered, failed or waiting. Every
    Kinguin call of the pass is recorded (`kinguin_calls.replacement_id`)."""
    async with res.pool.connection() as conn:
        cur = await conn.execute(Q["order_of_replacement"], {"id": replacement_id})
        row = await cur.fetchone()
    if row is None:
        log.warning("replacement.unknown", replacement_id=replacement_id)
        return
    order_id: uuid.UUID = row[0]
    async with calls.recording(res, order_id, replacement_id=replacement_id):
        await _run_pass(res, order_id, replacement_id)


async def _run_pass(res: Resources, order_id: uuid.UUID, replacement_id: int) -> None:
    async with res.pool.connection() as conn, conn.transaction():
        job = await _lock_job(conn, order_id, replacement_id)
        if job is None or job.status in FINAL:
            log.info("replacement.skipped", status=job.status if job else None)
            return
        if job.order_status != "fulfilled" or job.key_revoked:
            await _fail(conn, job.id, _no_longer_wanted(job, job.kinguin_order_id))
            return
        if job.kinguin_order_id is None:
            # Committed before we buy: a crash after buying is then recovered by lookup.
            await conn.execute(Q["mark_replacement_placement_started"], {"id": job.id})

    fresh: Order | None = None
    if job.kinguin_order_id is None:
        line = repository.OrderLine(
            product_id=job.product_id,
            qty=1,
            max_cost=job.max_cost,
            text_only=job.text_only,
            name=job.name,
        )
        try:
            fresh = await purchase.find_or_place(
                res.kinguin_client,
                job.external_id,
                purchase.products_for([line]),
                may_exist=job.placement_started_at is not None,
                chaos="replacement_",
            )
        except purchase.PurchaseRefused as exc:
            await fail_replacement(res, job.id, str(exc))
            return
        async with res.pool.connection() as conn, conn.transaction():
            await conn.execute(
                Q["record_replacement_order"],
                {"id": job.id, "kinguin_order_id": fresh.order_id, "kinguin_status": fresh.status},
            )
        kinguin_order_id = fresh.order_id
    else:
        kinguin_order_id = job.kinguin_order_id
    await _collect(res, job, kinguin_order_id, fresh)


async def _lock_job(conn: Conn, order_id: uuid.UUID, replacement_id: int) -> _Job | None:
    # The order first, then the row: the same order as the request, so never a deadlock.
    await conn.execute(Q["lock_order_for_replacement"], {"order_id": order_id})
    async with conn.cursor(row_factory=class_row(_Job)) as cur:
        await cur.execute(Q["lock_replacement_job"], {"id": replacement_id})
        return await cur.fetchone()


def _no_longer_wanted(job: _Job, kinguin_order_id: str | None) -> str:
    why = (
        f"the order is {job.order_status}"
        if job.order_status != "fulfilled"
        else ("the faulty key was revoked")
    )
    if kinguin_order_id is not None:
        return f"{why}: the key of Kinguin order {kinguin_order_id} was not delivered"
    if job.placement_started_at is not None:
        return f"{why}: check Kinguin for an order with orderExternalId {job.external_id}"
    return f"{why}: nothing was bought"


# --- 3. the key ----------------------------------------------------------------------------


async def _collect(res: Resources, job: _Job, kinguin_order_id: str, fresh: Order | None) -> None:
    kinguin = res.kinguin_client
    try:
        kinguin_order = fresh or await kinguin.get_order(kinguin_order_id)
        keys = await kinguin.get_keys(kinguin_order_id)
    except KinguinPermanentError as exc:
        await fail_replacement(
            res, job.id, f"Kinguin refused to show order {kinguin_order_id}: {exc.kind}"
        )
        return
    if kinguin_order.status in ("canceled", "refunded"):
        await fail_replacement(
            res,
            job.id,
            f"Kinguin order {kinguin_order_id} was {kinguin_order.status}",
            kinguin_status=kinguin_order.status,
        )
        return
    if not keys or (kinguin_order.status != "completed" and len(keys) < kinguin_order.key_count):
        await _wait_for_key(res, job, kinguin_order)
        return
    await _deliver(res, job, kinguin_order_id, keys[0])


async def _wait_for_key(res: Resources, job: _Job, kinguin_order: Order) -> None:
    """Re-defer the job with backoff, or fail the replacement after too many polls."""
    settings = res.settings
    async with res.pool.connection() as conn, conn.transaction():
        await conn.execute(
            Q["update_replacement_kinguin_status"],
            {"id": job.id, "kinguin_status": kinguin_order.status},
        )
        cur = await conn.execute(Q["bump_replacement_polls"], {"id": job.id})
        row = await cur.fetchone()
        polls = int(row[0]) if row else 0
        if polls > settings.kinguin_max_polls:
            await _fail(
                conn,
                job.id,
                f"key not delivered after {polls - 1} polls of Kinguin order "
                f"{kinguin_order.order_id} (limit BITLOOT_KINGUIN_MAX_POLLS="
                f"{settings.kinguin_max_polls})",
            )
            return
        delay = min(settings.kinguin_poll_interval * 2 ** (polls - 1), MAX_POLL_DELAY)
        try:
            async with conn.transaction():
                await defer_replacement(conn, job.id, delay=delay, poll=True)
        except procrastinate.exceptions.AlreadyEnqueued:
            log.info("replacement.poll_already_scheduled")
            return
    log.info("replacement.waiting_for_key", polls=polls, next_in=delay)


async def _deliver(res: Resources, job: _Job, kinguin_order_id: str, key: Key) -> None:
    """Seal and upload the new key, then in one transaction: its row, the old key revoked,
    the replacement delivered, the customer's notice queued."""
    [stored] = await seal_and_upload(res, job.order_id, [key])
    async with res.pool.connection() as conn, conn.transaction():
        state = await _lock_job(conn, job.order_id, job.id)
        if state is None or state.status != "placed":
            log.info("replacement.already_done", status=state.status if state else None)
            return
        if state.order_status != "fulfilled" or state.key_revoked:
            await _fail(conn, job.id, _no_longer_wanted(state, kinguin_order_id))
            return
        await conn.execute(
            Q["insert_replacement_key"],
            {
                "order_id": job.order_id,
                "key_id": stored.key_id,
                "product_id": stored.product_id or job.product_id,
                "object_key": stored.object_key,
                "content_type": stored.content_type,
                "wrapped_data_key": stored.wrapped_data_key,
                "master_key_id": stored.master_key_id,
                "retention_days": res.settings.key_retention_days,
                "replaces_key_id": job.key_id,
            },
        )
        await conn.execute(
            Q["revoke_replaced_key"], {"order_id": job.order_id, "key_id": job.key_id}
        )
        await conn.execute(
            Q["mark_replacement_delivered"], {"id": job.id, "new_key_id": stored.key_id}
        )
        await queue_notice(
            conn,
            job.order_id,
            "key_replaced",
            details={"key_id": job.key_id},
            generation=job.number,
        )
    log.info("replacement.delivered", replacement_id=job.id, number=job.number)


async def fail_replacement(
    res: Resources, replacement_id: int, reason: str, *, kinguin_status: str | None = None
) -> None:
    """End the replacement in `failed` with a reason an admin can read (the order and the
    faulty key are left as they are)."""
    async with res.pool.connection() as conn, conn.transaction():
        if kinguin_status is not None:
            await conn.execute(
                Q["update_replacement_kinguin_status"],
                {"id": replacement_id, "kinguin_status": kinguin_status},
            )
        await _fail(conn, replacement_id, reason)


async def _fail(conn: Conn, replacement_id: int, reason: str) -> None:
    await conn.execute(Q["fail_replacement"], {"id": replacement_id, "error": reason[:500]})
    log.warning("replacement.failed", replacement_id=replacement_id, reason=reason)
