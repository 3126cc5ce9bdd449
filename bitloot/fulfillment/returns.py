"""A refunded order's keys: revoked at once, and given back to Kinguin when it allows it.

`revoke_keys` runs in the refund's transaction: download-link serves no revoked key (and
none at all for a refunded order). The ciphertexts stay until the retention rule deletes
them (`expires_at`, the `expire_keys` job), like any other key's.

`return_kinguin_keys` is the job the refund defers. Kinguin takes keys back (and returns
the balance) only within 24 h of delivery, for keys never claimed, and answers only one
return request per order (docs/external-apis.md 1.6). So, per order:

1. **Decide**, under the order's row lock: no Kinguin order, a Kinguin order already
   canceled or refunded, a key the customer (or an admin) revealed, or keys delivered more
   than 24 h ago: record `skipped` with why, and ask nothing.
2. **Intent.** Otherwise commit a `requested` row first. It is unique per order, so a
   duplicated or concurrent job inserts nothing and sends nothing.
3. **Ask** `POST /v2/order/{id}/keys/return` (the client retries timeouts and 5xx) and
   record the answer: `returned` with the keys' statuses, or `refused` with Kinguin's kind
   (never fatal: the job succeeds). A retry that follows a request which did reach Kinguin
   is refused as a second request, so after a refusal the keys' statuses are read back
   (`GET /v1/order`): keys shown `RETURNED` make it `returned`.
4. **Recover.** A job that finds `requested` without an answer (its predecessor crashed,
   or gave up on a transient error) never sends again: it reads the keys' statuses and
   records `returned` or `error`. Transient errors retry the job; after the last attempt
   `error` is recorded.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
import structlog
from procrastinate import JobContext, RetryStrategy
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from bitloot.db.queries import QuerySet
from bitloot.fulfillment import calls
from bitloot.kinguin.errors import KinguinError, KinguinPermanentError, KinguinRetryableError
from bitloot.queue import FULFILLMENT_QUEUE, queue_app
from bitloot.resources import Resources, current

log = structlog.get_logger(__name__)
Q = QuerySet("bitloot.fulfillment", "returns_queries.sql")
Conn = psycopg.AsyncConnection[Any]

RETURN_TASK = "return_kinguin_keys"
RETURN_WINDOW_SECONDS = 24 * 3600
MAX_ATTEMPTS = 6
Outcome = Literal["requested", "returned", "refused", "skipped", "error"]
KeyStatuses = list[dict[str, str]]


@dataclass(frozen=True)
class ReturnFacts:
    """What the decision rests on, read under the order's row lock."""

    order_status: str
    kinguin_order_id: str | None
    kinguin_status: str | None
    delivered_seconds_ago: float | None
    revealed: bool
    outcomes: list[str]


async def revoke_keys(conn: Conn, order_id: uuid.UUID, reason: str) -> int:
    """Revoke the order's live keys (`refunded` or `replaced`); how many. Caller's
    transaction."""
    cur = await conn.execute(Q["revoke_keys"], {"order_id": order_id, "reason": reason})
    return len(await cur.fetchall())


async def run_key_return(res: Resources, order_id: uuid.UUID) -> str:
    """One pass of the key return for a refunded order; the outcome recorded (or found)."""
    async with calls.recording(res, order_id):
        return await _run(res, order_id)


async def record_error(res: Resources, order_id: uuid.UUID, detail: str) -> None:
    """Record that the return's outcome stays unknown (the job gave up)."""
    async with res.pool.connection() as conn, conn.transaction():
        facts = await _facts(conn, order_id)
        kinguin_order_id = facts.kinguin_order_id if facts else None
        await _record(conn, order_id, kinguin_order_id, "error", detail=detail)


async def _run(res: Resources, order_id: uuid.UUID) -> str:
    async with res.pool.connection() as conn, conn.transaction():
        facts = await _facts(conn, order_id)
        if facts is None:
            log.warning("kinguin.key_return_unknown_order", order_id=str(order_id))
            return "skipped"
        settled = [o for o in facts.outcomes if o != "requested"]
        if settled:
            log.info("kinguin.key_return_already_recorded", outcome=settled[-1])
            return settled[-1]
        interrupted = "requested" in facts.outcomes
        if not interrupted:
            why = _why_not(facts)
            if why is not None:
                await _record(conn, order_id, facts.kinguin_order_id, "skipped", detail=why)
                log.info("kinguin.key_return_skipped", order_id=str(order_id), why=why)
                return "skipped"
            if not await _record(conn, order_id, facts.kinguin_order_id, "requested", detail=""):
                return "requested"  # another job holds the one request
    kinguin_order_id = facts.kinguin_order_id
    assert kinguin_order_id is not None  # _why_not skips an order without one
    if interrupted:
        return await _settle_unanswered(res, order_id, kinguin_order_id)
    return await _ask(res, order_id, kinguin_order_id)


def _why_not(facts: ReturnFacts) -> str | None:
    """Why no return is asked for (None: ask)."""
    if facts.order_status != "refunded":
        return f"the order is {facts.order_status}, not refunded"
    if facts.kinguin_order_id is None:
        return "no Kinguin order was bought"
    if facts.kinguin_status in ("canceled", "refunded"):
        return f"the Kinguin order was {facts.kinguin_status}: its balance is already returned"
    if facts.revealed:
        return "a key was revealed (a download link was issued): Kinguin takes back no claimed key"
    ago = facts.delivered_seconds_ago
    if ago is not None and ago > RETURN_WINDOW_SECONDS:
        return f"delivered {ago / 3600:.1f} h ago: Kinguin takes keys back within 24 h"
    return None


async def _ask(res: Resources, order_id: uuid.UUID, kinguin_order_id: str) -> str:
    kinguin = res.kinguin_client
    try:
        keys = await kinguin.return_keys(kinguin_order_id)
    except KinguinPermanentError as exc:
        said = f"{exc.kind} (HTTP {exc.status}): {exc.detail}"
        statuses = await _statuses(res, kinguin_order_id)
        if statuses and any(k["status"] == "RETURNED" for k in statuses):
            # A retry after a request that did reach Kinguin: the first one returned them.
            detail = f"Kinguin refused a repeated request ({said}); its keys show RETURNED"
            return await _finish(
                res, order_id, kinguin_order_id, "returned", detail=detail, statuses=statuses
            )
        return await _finish(
            res, order_id, kinguin_order_id, "refused", detail=said, statuses=statuses or []
        )
    statuses = [{"id": k.id, "status": k.status} for k in keys]
    returned = sum(1 for k in keys if k.status == "RETURNED")
    detail = f"{returned} of {len(keys)} keys returned"
    return await _finish(
        res, order_id, kinguin_order_id, "returned", detail=detail, statuses=statuses
    )


async def _settle_unanswered(res: Resources, order_id: uuid.UUID, kinguin_order_id: str) -> str:
    """The request was committed and may have been sent: never send it again; read back
    what Kinguin shows (a transient error raises, and the job retries)."""
    try:
        order = await res.kinguin_client.get_order(kinguin_order_id)
    except KinguinPermanentError as exc:
        detail = (
            f"the return request's answer was lost; Kinguin refused to show the order: {exc.kind}"
        )
        return await _finish(res, order_id, kinguin_order_id, "error", detail=detail, statuses=[])
    statuses = [{"id": k.id, "status": k.status} for p in order.products for k in p.keys]
    if any(k["status"] == "RETURNED" for k in statuses):
        detail = "the return request's answer was lost; Kinguin shows the keys RETURNED"
        return await _finish(
            res, order_id, kinguin_order_id, "returned", detail=detail, statuses=statuses
        )
    detail = "the return request's answer was lost; Kinguin shows no key returned"
    return await _finish(res, order_id, kinguin_order_id, "error", detail=detail, statuses=statuses)


async def _statuses(res: Resources, kinguin_order_id: str) -> KeyStatuses | None:
    """The keys' statuses as Kinguin shows them, or None when it will not say."""
    try:
        order = await res.kinguin_client.get_order(kinguin_order_id)
    except KinguinError as exc:
        log.warning("kinguin.key_statuses_unknown", kind=exc.kind)
        return None
    return [{"id": k.id, "status": k.status} for p in order.products for k in p.keys]


async def _finish(
    res: Resources,
    order_id: uuid.UUID,
    kinguin_order_id: str,
    outcome: Outcome,
    *,
    detail: str,
    statuses: KeyStatuses,
) -> str:
    async with res.pool.connection() as conn, conn.transaction():
        await _record(conn, order_id, kinguin_order_id, outcome, detail=detail, statuses=statuses)
    log_event = log.info if outcome == "returned" else log.warning
    log_event("kinguin.key_return", order_id=str(order_id), outcome=outcome, detail=detail)
    return outcome


async def _facts(conn: Conn, order_id: uuid.UUID) -> ReturnFacts | None:
    async with conn.cursor(row_factory=class_row(ReturnFacts)) as cur:
        await cur.execute(Q["return_facts"], {"order_id": order_id})
        return await cur.fetchone()


async def _record(
    conn: Conn,
    order_id: uuid.UUID,
    kinguin_order_id: str | None,
    outcome: Outcome,
    *,
    detail: str,
    statuses: KeyStatuses | None = None,
) -> bool:
    """Append one row; False when it was a second `requested` (nothing inserted)."""
    cur = await conn.execute(
        Q["record_return"],
        {
            "order_id": order_id,
            "kinguin_order_id": kinguin_order_id,
            "outcome": outcome,
            "detail": detail[:1000],
            "key_statuses": Jsonb(statuses or []),
        },
    )
    return await cur.fetchone() is not None


@queue_app.task(
    name=RETURN_TASK,
    queue=FULFILLMENT_QUEUE,
    pass_context=True,
    retry=RetryStrategy(
        max_attempts=MAX_ATTEMPTS,
        exponential_wait=2,
        retry_exceptions={KinguinRetryableError, psycopg.OperationalError},
    ),
)
async def return_kinguin_keys(context: JobContext, order_id: str) -> str:
    """Give a refunded order's unrevealed keys back to Kinguin when it allows it
    (`run_key_return`); a refusal is recorded, never a failure of the job."""
    res = current()
    oid = uuid.UUID(order_id)
    structlog.contextvars.bind_contextvars(order_id=order_id, job_id=context.job.id)
    try:
        return await run_key_return(res, oid)
    except KinguinRetryableError as exc:
        if context.job.attempts + 1 >= MAX_ATTEMPTS:
            await record_error(res, oid, f"gave up after {MAX_ATTEMPTS} attempts: {exc.kind}")
            return "error"
        log.warning("kinguin.key_return_retry", kind=exc.kind, attempt=context.job.attempts)
        raise
    finally:
        structlog.contextvars.unbind_contextvars("order_id", "job_id")
