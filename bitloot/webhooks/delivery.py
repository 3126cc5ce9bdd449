"""Delivering events to an endpoint: one job per (endpoint, order) drains that pair.

The database queues the job (`deliver_webhooks`, lock and queueing lock
`webhook:<endpoint>:<order>`) in the transaction that wrote the event (migration 0019). A
run takes the pair's oldest pending delivery (events are ordered by `webhook_messages.id`)
and, when it is due, makes one HTTP attempt:

    2xx                              delivered; go on to the pair's next event
    5xx, 408, 409, 425, 429, 3xx,    retried by the schedule below: the delivery stays
    timeout, connection error,       pending, the job is queued again for that time, and
    refused address                  the run stops, so the order's later events wait
    any other 4xx                    failed at once; go on to the next event

Retries follow the Standard Webhooks (Svix) schedule, stretched to about three days: the
first attempt at once, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, 14 h and 24 h after
the previous failure (ten attempts, 2 days 17 hours in all). A 429 or 503 whose
`Retry-After` asks for longer (read up to an hour) waits that long instead. When the tenth
attempt fails, the delivery fails; if the endpoint has not accepted a single delivery since
that event happened, it has been failing for days: it is disabled, with the reason
`failing since <first failure>: <last error>` (the needs_attention view shows it), and its
later events stay pending until an admin enables it. A redelivery (an admin's) puts a
delivery back to pending and starts a new round of the schedule.

A redirect is never followed (a 3xx is a failure: the receiver's URL is wrong or moved).
The URL is checked before each attempt (`check_url`) and the connection is made through
`GuardedResolver`, so a name that now resolves to a private or metadata address gets no
request: the attempt's outcome is `refused_address`, retried like a connection error,
since a DNS record can be fixed within the schedule.

Each attempt is one `webhook_attempts` row, written in the transaction that updates the
delivery row (and queues the retry). A worker killed while a request is in flight leaves
no row for that attempt, whose outcome nobody knows: the job is run again (the
stalled-job retry, `bitloot.queue_maintenance`) and sends the same event with the same
`webhook-id`, which receivers dedupe on, as attempt number `attempts + 1` again; the
attempt numbers in `webhook_attempts` stay gapless and match `webhook_deliveries.attempts`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import aiohttp
import psycopg
import structlog
from procrastinate.exceptions import AlreadyEnqueued

from bitloot.config import Settings
from bitloot.httpclient import parse_retry_after
from bitloot.metrics import WEBHOOK_ATTEMPTS
from bitloot.queue import queue_app
from bitloot.resources import Resources
from bitloot.vault.crypto import MasterKeyRing
from bitloot.webhooks import repository
from bitloot.webhooks.addresses import GuardedResolver, RefusedAddress, check_url
from bitloot.webhooks.endpoints import REMOVED_ERROR
from bitloot.webhooks.repository import PairHead
from bitloot.webhooks.secrets import unwrap
from bitloot.webhooks.signing import event_body, signed_headers

log = structlog.get_logger(__name__)

Conn = psycopg.AsyncConnection[Any]
Outcome = Literal["delivered", "retry", "failed", "refused_address"]

DELIVER_TASK = "deliver_webhooks"
# Seconds to wait before attempt n+1 after attempt n failed (index n-1 is after the first
# attempt): Svix's 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, then 14 h and 24 h.
RETRY_DELAYS: tuple[int, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000, 50400, 86400)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
# Answers that may succeed later; any other 4xx will not (the receiver refuses the event).
RETRYABLE_4XX = frozenset({408, 409, 425, 429})
# Answers whose Retry-After we honour when it asks for longer than the schedule.
RETRY_AFTER_STATUSES = frozenset({429, 503})
MAX_ERROR_CHARS = 300


def pair_lock(endpoint_id: uuid.UUID, order_id: uuid.UUID) -> str:
    """The procrastinate lock and queueing lock of one pair's job (as migration 0019 writes
    it in `bitloot_defer_webhook_job`)."""
    return f"webhook:{endpoint_id}:{order_id}"


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one HTTP attempt came to, before the schedule judges it."""

    kind: Literal["accepted", "rejected", "retryable", "refused"]
    status_code: int | None
    latency_ms: float | None
    error: str | None
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The attempt's outcome, and the delivery's status and wait after it."""

    outcome: Outcome
    status: Literal["pending", "delivered", "failed"]
    delay: float | None  # seconds to the next attempt, when still pending
    exhausted: bool = False  # failed because every attempt of the schedule was used


def judge(result: AttemptResult, attempts_in_round: int) -> Verdict:
    """The verdict on an attempt, `attempts_in_round` attempts having been made before it
    in this round of the schedule."""
    if result.kind == "accepted":
        return Verdict("delivered", "delivered", None)
    if result.kind == "rejected":
        return Verdict("failed", "failed", None)
    made = attempts_in_round + 1
    if made >= MAX_ATTEMPTS:
        return Verdict("failed", "failed", None, exhausted=True)
    delay = float(RETRY_DELAYS[made - 1])
    if result.status_code in RETRY_AFTER_STATUSES and result.retry_after is not None:
        delay = max(delay, result.retry_after)
    return Verdict("refused_address" if result.kind == "refused" else "retry", "pending", delay)


def classify(status: int) -> Literal["accepted", "rejected", "retryable"]:
    """2xx accepted; 4xx other than 408/409/425/429 rejected; the rest (3xx, 5xx) retried."""
    if 200 <= status < 300:
        return "accepted"
    if 400 <= status < 500 and status not in RETRYABLE_4XX:
        return "rejected"
    return "retryable"


@asynccontextmanager
async def http_session(settings: Settings) -> AsyncIterator[aiohttp.ClientSession]:
    """A session whose connections go only to addresses `GuardedResolver` allows."""
    resolver = GuardedResolver(allow_private=settings.webhook_allow_private_urls)
    connector = aiohttp.TCPConnector(resolver=resolver, limit=10)
    timeout = aiohttp.ClientTimeout(total=settings.webhook_timeout)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False
    ) as session:
        yield session


async def send_attempt(
    http: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    body: bytes,
    *,
    allow_private: bool,
) -> AttemptResult:
    """POST the event once: no redirect followed, nothing read of the answer but its
    status (and `Retry-After`); every failure becomes a result, never an exception."""
    try:
        check_url(url, allow_private=allow_private)
    except RefusedAddress as exc:
        return AttemptResult("refused", None, None, _one_line(f"refused: {exc}"))
    started = time.monotonic()
    try:
        async with http.post(url, data=body, headers=headers, allow_redirects=False) as resp:
            status = resp.status
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    except RefusedAddress as exc:
        return AttemptResult("refused", None, None, _one_line(f"refused: {exc}"))
    except TimeoutError:
        return AttemptResult("retryable", None, _since(started), "timed out")
    except aiohttp.ClientError as exc:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return AttemptResult("retryable", None, _since(started), _one_line(text))
    kind = classify(status)
    error = None if kind == "accepted" else f"HTTP {status}"
    return AttemptResult(kind, status, _since(started), error, retry_after)


async def drain_pair(res: Resources, endpoint_id: uuid.UUID, order_id: uuid.UUID) -> int:
    """Deliver the pair's due events oldest first until one must wait; how many attempts
    were made. See the module docstring for the rules."""
    attempts = 0
    async with http_session(res.settings) as http, res.pool.connection() as conn:
        while True:
            ready = await _next_attempt(conn, res.ring, endpoint_id, order_id)
            if ready is None:
                return attempts
            url, head, secrets = ready
            body = event_body(
                head.event_type,
                head.created_at,
                head.data,
                include_email=res.settings.webhook_include_email,
            )
            headers = signed_headers(secrets, head.msg_id, body, now=time.time())
            result = await send_attempt(
                http, url, headers, body, allow_private=res.settings.webhook_allow_private_urls
            )
            attempts += 1
            verdict = judge(result, head.round_attempts)
            await _record(conn, (endpoint_id, order_id), head, result, verdict)
            if verdict.status == "pending":
                return attempts


async def _next_attempt(
    conn: Conn, ring: MasterKeyRing, endpoint_id: uuid.UUID, order_id: uuid.UUID
) -> tuple[str, PairHead, list[bytes]] | None:
    """The URL, head delivery and signing secrets of the pair's next attempt; None when
    there is none to make now (queued again for the head's time when it is not due)."""
    async with conn.transaction():
        endpoint = await repository.delivery_endpoint(conn, endpoint_id)
        if endpoint is None or endpoint.removed_at is not None:
            failed = await repository.fail_pair_deliveries(
                conn, endpoint_id, order_id, REMOVED_ERROR
            )
            if failed:
                log.info("webhook.endpoint_removed", endpoint_id=str(endpoint_id),
                         order_id=str(order_id), failed=failed)  # fmt: skip
            return None
        if not endpoint.enabled:  # pending deliveries wait for `bitloot webhooks enable`
            return None
        head = await repository.pair_head(conn, endpoint_id, order_id)
        if head is None:
            return None
        if not head.due:
            await requeue_pair_at(conn, endpoint_id, order_id, head.next_attempt_at)
            return None
        wrapped = await repository.endpoint_signing_secrets(conn, endpoint_id)
    if not wrapped:
        raise RuntimeError(f"webhook endpoint {endpoint_id} has no signing secret")
    secrets = [unwrap(ring, endpoint_id, w) for w in wrapped]
    return endpoint.url, head, secrets


async def _record(
    conn: Conn,
    pair: tuple[uuid.UUID, uuid.UUID],
    head: PairHead,
    result: AttemptResult,
    verdict: Verdict,
) -> None:
    """The attempt row and the delivery's new state in one transaction, with the retry's
    job when there is one, and the endpoint disabled when it has been failing for days."""
    endpoint_id, order_id = pair
    disabled: str | None = None
    async with conn.transaction():
        settled = await repository.settle_attempt(
            conn,
            endpoint_id,
            head,
            outcome=verdict.outcome,
            status=verdict.status,
            delay=verdict.delay,
            status_code=result.status_code,
            latency_ms=result.latency_ms,
            error=result.error,
        )
        if settled is not None and verdict.status == "pending":
            await requeue_pair_at(conn, endpoint_id, order_id, settled.next_attempt_at)
        if settled is not None and verdict.exhausted:
            disabled = await repository.disable_failing_endpoint(
                conn, endpoint_id, event_at=head.created_at, error=result.error or "failed"
            )
    fields: dict[str, Any] = {
        "endpoint_id": str(endpoint_id),
        "order_id": str(order_id),
        "msg_id": head.msg_id,
        "event_type": head.event_type,
        "attempt": head.attempts + 1,
        "outcome": verdict.outcome,
        "status_code": result.status_code,
        "latency_ms": result.latency_ms,
        "error": result.error,
    }
    if settled is None:
        # The row changed under the attempt (the endpoint was removed meanwhile): nothing
        # is recorded for an attempt the delivery no longer expects.
        log.warning("webhook.attempt_unrecorded", **fields)
        return
    WEBHOOK_ATTEMPTS.labels(outcome=verdict.outcome).inc()
    if verdict.status == "pending":
        fields["next_attempt_at"] = settled.next_attempt_at.isoformat()
    level = log.info if verdict.outcome == "delivered" else log.warning
    level("webhook.attempt", **fields)
    if disabled is not None:
        log.error("webhook.endpoint_disabled", endpoint_id=str(endpoint_id), reason=disabled)


async def requeue_pair_at(
    conn: Conn, endpoint_id: uuid.UUID, order_id: uuid.UUID, when: datetime
) -> None:
    """Queue the pair's job for `when`, in the caller's transaction. A job already waiting
    for the pair is kept (its queueing lock), brought forward to `when` if it was later."""
    lock = pair_lock(endpoint_id, order_id)
    # By name: the task lives in `tasks`, which imports this module.
    deferrer = queue_app.configure_task(
        DELIVER_TASK,
        allow_unknown=False,
        connection=conn,
        lock=lock,
        queueing_lock=lock,
        schedule_at=when,
    )
    try:
        async with conn.transaction():  # a savepoint: the clash aborts only the INSERT
            await deferrer.defer_async(endpoint_id=str(endpoint_id), order_id=str(order_id))
    except AlreadyEnqueued:
        await repository.hasten_pair_job(conn, lock, when)


async def requeue_pair_now(conn: Conn, endpoint_id: uuid.UUID, order_id: uuid.UUID) -> None:
    """Queue the pair's job to run now, in the caller's transaction (a waiting job is kept
    and made due now)."""
    await repository.defer_pair_job(conn, endpoint_id, order_id)
    await repository.hasten_pair_job(conn, pair_lock(endpoint_id, order_id), None)


async def oldest_pending_age(conn: Conn) -> float:
    """Seconds since the oldest event still pending for an enabled endpoint happened (0
    when none is): the `bitloot_webhook_oldest_pending_seconds` gauge."""
    return await repository.oldest_pending_age(conn)


def _since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 1] + "…"
