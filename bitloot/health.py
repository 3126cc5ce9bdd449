"""`/healthz` (the process is up), `/readyz` (database reachable, schema current), `/metrics`."""

from __future__ import annotations

import asyncio
from typing import Literal

from aiohttp import web
from pydantic import BaseModel

from bitloot.db.migrate import pending_migrations
from bitloot.metrics import (
    FAILED_JOBS,
    NEEDS_ATTENTION,
    QUEUE_DEPTH,
    STUCK_ORDERS,
    WEBHOOK_OLDEST_PENDING,
    exposition,
)
from bitloot.queue import EMAIL_QUEUE, FULFILLMENT_QUEUE, MAINTENANCE_QUEUE, WEBHOOKS_QUEUE
from bitloot.resources import Resources
from bitloot.web.context import RESOURCES, resources
from bitloot.web.contract import Ok, operation
from bitloot.web.errors import ServiceUnavailable
from bitloot.webhooks import service as webhooks

routes = web.RouteTableDef()
metrics_routes = web.RouteTableDef()

READY_TIMEOUT = 3.0


class HealthOut(BaseModel):
    """`GET /healthz`: the process answers."""

    status: Literal["ok"]


class ReadyOut(BaseModel):
    """`GET /readyz`: the database answers and no migration is pending."""

    status: Literal["ready"]
    database: Literal["ok"]
    migrations: Literal["current"]


@routes.get("/healthz")
@operation(
    "Liveness", tag="operations", security="none", ok=Ok(200, "The process is up.", HealthOut)
)
async def healthz(_request: web.Request) -> web.Response:
    """Liveness: answers as long as the event loop does."""
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
@operation(
    "Readiness",
    tag="operations",
    security="none",
    ok=Ok(200, "The database answers and the schema is current.", ReadyOut),
    problems={503: "The database is unreachable, or a migration is pending."},
)
async def readyz(request: web.Request) -> web.Response:
    """Readiness: the database answers and no migration is pending."""
    ctx = resources(request)
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            async with ctx.pool.connection() as conn:
                await conn.execute("SELECT 1")
            # yoyo is synchronous: keep it off the event loop.
            pending = await asyncio.to_thread(pending_migrations, ctx.conninfo)
    except Exception:
        raise ServiceUnavailable("The database is not reachable.", retry_after=5) from None
    if pending:
        raise ServiceUnavailable(f"{len(pending)} migration(s) pending: run `bitloot migrate`.")
    return web.json_response({"status": "ready", "database": "ok", "migrations": "current"})


@metrics_routes.get("/metrics")
@operation(
    "Prometheus metrics",
    tag="operations",
    security="none",
    ok=Ok(200, "Prometheus text exposition.", media_type="text/plain", schema={"type": "string"}),
)
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of this process's metrics, with the queue depth and the
    audit views' counts (failed jobs, stuck orders, what needs attention)."""
    if RESOURCES in request.app:
        await _refresh_queue_depth(request.app[RESOURCES])
        await _refresh_attention(request.app[RESOURCES])
    body, content_type = exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def _refresh_queue_depth(ctx: Resources) -> None:
    try:
        async with asyncio.timeout(READY_TIMEOUT), ctx.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT queue_name, status::text, count(*) FROM procrastinate_jobs"
                " WHERE status IN ('todo', 'doing') GROUP BY 1, 2"
            )
            rows = await cur.fetchall()
    except Exception:  # metrics must answer even when the database does not
        return
    QUEUE_DEPTH.clear()
    for queue, status, count in rows:
        QUEUE_DEPTH.labels(queue=queue, status=status).set(count)


# One statement, three views: `kind` is 'failed_job' (label: the queue), 'stuck' or
# 'attention' (label: the needs_attention kind). Counted on the database, a few rows back.
ATTENTION_COUNTS = """
SELECT 'failed_job', queue_name, count(*) FROM failed_jobs GROUP BY queue_name
UNION ALL SELECT 'stuck', '', count(*) FROM stuck_orders
UNION ALL SELECT 'attention', kind, count(*) FROM needs_attention GROUP BY kind
"""
# Always exported (as 0 when empty), so an alert on `> 0` sees a zero, not nothing.
ATTENTION_KINDS = ("order", "payment", "webhook", "email", "webhook endpoint")
JOB_QUEUES = (FULFILLMENT_QUEUE, EMAIL_QUEUE, MAINTENANCE_QUEUE, WEBHOOKS_QUEUE)


async def _refresh_attention(ctx: Resources) -> None:
    """Set the failed-job, stuck-order and needs-attention gauges from the audit views, and
    the age of the oldest undelivered outbound webhook.

    A database that does not answer within READY_TIMEOUT leaves the labelled series out of
    this scrape and `bitloot_stuck_orders` NaN (unknown, not zero), instead of failing it.
    """
    try:
        async with (
            asyncio.timeout(READY_TIMEOUT),
            ctx.pool.connection() as conn,
            conn.transaction(),
        ):
            # The server stops the statement too, so a slow view frees its connection.
            await conn.execute("SET LOCAL statement_timeout = '3s'")  # READY_TIMEOUT
            cur = await conn.execute(ATTENTION_COUNTS)
            rows = await cur.fetchall()
            oldest_webhook = await webhooks.oldest_pending_age(conn)
    except Exception:  # metrics must answer even when the database does not
        FAILED_JOBS.clear()
        NEEDS_ATTENTION.clear()
        STUCK_ORDERS.set(float("nan"))
        WEBHOOK_OLDEST_PENDING.set(float("nan"))
        return
    WEBHOOK_OLDEST_PENDING.set(oldest_webhook)
    FAILED_JOBS.clear()
    NEEDS_ATTENTION.clear()
    STUCK_ORDERS.set(0)
    for queue in JOB_QUEUES:
        FAILED_JOBS.labels(queue=queue).set(0)
    for kind in ATTENTION_KINDS:
        NEEDS_ATTENTION.labels(kind=kind).set(0)
    for what, label, count in rows:
        if what == "failed_job":
            FAILED_JOBS.labels(queue=label).set(count)
        elif what == "stuck":
            STUCK_ORDERS.set(count)
        else:
            NEEDS_ATTENTION.labels(kind=label).set(count)
