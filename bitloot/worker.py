"""`bitloot worker`: procrastinate workers for fulfillment, email and maintenance jobs.

Stalled jobs (their worker died) are found by procrastinate's heartbeats and retried by the
maintenance task; SIGTERM stops fetching and lets running jobs finish.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any, Literal

import structlog

from bitloot.cli import CommandError
from bitloot.config import Settings
from bitloot.db.connect import behind_transaction_pooler, direct_database_url
from bitloot.logs import configure_logging
from bitloot.metrics import JOB_OUTCOMES, KINGUIN_CALL_DURATION, REGISTRY
from bitloot.queue import (
    EMAIL_QUEUE,
    FULFILLMENT_QUEUE,
    MAINTENANCE_QUEUE,
    WEBHOOKS_QUEUE,
    listen_on,
    queue_app,
)
from bitloot.queue_maintenance import STALLED_AFTER_SECONDS
from bitloot.resources import Resources, first_line, install, open_resources

log = structlog.get_logger(__name__)

ALL_QUEUES = (FULFILLMENT_QUEUE, EMAIL_QUEUE, MAINTENANCE_QUEUE, WEBHOOKS_QUEUE)
HEARTBEAT_SECONDS = 2.0


def _observe_kinguin(endpoint: str, seconds: float, outcome: str) -> None:
    KINGUIN_CALL_DURATION.labels(endpoint=endpoint, outcome=outcome).observe(seconds)


async def count_jobs(call_next: Callable[[], Awaitable[Any]], context: Any, _worker: Any) -> Any:
    """procrastinate worker middleware: jobs by task and outcome, with the job id logged."""
    task = context.job.task_name
    with structlog.contextvars.bound_contextvars(job_id=context.job.id):
        try:
            result = await call_next()
        except Exception:
            JOB_OUTCOMES.labels(task=task, outcome="raised").inc()
            raise
    JOB_OUTCOMES.labels(task=task, outcome="succeeded").inc()
    return result


def serve_worker_metrics(port: int) -> None:
    """Expose this worker's metrics on 127.0.0.1:`port` (0: not at all)."""
    if not port:
        return
    from prometheus_client import start_http_server

    try:
        start_http_server(port, addr="127.0.0.1", registry=REGISTRY)
        log.info("metrics.listening", url=f"http://127.0.0.1:{port}/metrics")
    except OSError:
        # Several workers on one host: give each its own BITLOOT_WORKER_INSTANCE.
        log.warning("metrics.port_in_use", port=port)


async def open_worker_resources(
    settings: Settings, stack: AsyncExitStack, *, concurrency: int = 4
) -> Resources:
    """Open the resources, install them for the tasks and open the queue (LISTEN where
    `listen_mode` says); everything closes with `stack`."""
    res = await open_resources(
        settings,
        stack,
        pool_size=settings.effective_worker_pool_size(concurrency),
        kinguin=True,
        mail=True,
        on_kinguin_call=_observe_kinguin,
    )
    install(res)
    stack.callback(install, None)
    listen_on(direct_database_url(settings) if listen_mode(settings) == "direct" else None)
    stack.callback(listen_on, None)
    await stack.enter_async_context(queue_app.open_async(res.pool))
    return res


def listen_mode(settings: Settings) -> Literal["direct", "database_url", "polling"]:
    """How a worker hears of new jobs: LISTEN on BITLOOT_DATABASE_DIRECT_URL when set; else
    on DATABASE_URL, unless that is a transaction pooler, which cannot keep a LISTEN (the
    session is another client's after each transaction): then it polls the queue every
    BITLOOT_JOB_POLLING_INTERVAL seconds."""
    if settings.database_direct_url is not None:
        return "direct"
    return "polling" if behind_transaction_pooler(settings) else "database_url"


async def run_worker(settings: Settings, *, concurrency: int, queues: list[str]) -> None:
    """Run one worker until SIGTERM/SIGINT, surviving database outages.

    procrastinate stops a worker whose LISTEN connection breaks (a PostgreSQL restart);
    we start it again with backoff instead of exiting, so a restart of the database does not
    need a restart of every worker. SIGTERM cancels the run, which procrastinate turns into
    a graceful stop: no new jobs, running jobs finish.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        res = await open_worker_resources(settings, stack, concurrency=concurrency)
        serve_worker_metrics(settings.effective_worker_metrics_port)
        listen = listen_mode(settings)
        if listen == "polling":
            log.warning("worker.polling", interval=settings.job_polling_interval,
                        reason="BITLOOT_DATABASE_POOLER=transaction without "
                        "BITLOOT_DATABASE_DIRECT_URL: no session to LISTEN on")  # fmt: skip
        # The transport's repr: SmtpTransport(smtp://host:port), never the password.
        log.info("worker.started", concurrency=concurrency, queues=queues,
                 mail=repr(res.mail), pool_size=res.pool.max_size,
                 pooler=settings.database_pooler, listen=listen)  # fmt: skip
        backoff = 1.0
        while not stop.is_set():
            started = loop.time()
            run = asyncio.create_task(
                queue_app.run_worker_async(
                    concurrency=concurrency,
                    queues=queues,
                    update_heartbeat_interval=HEARTBEAT_SECONDS,
                    stalled_worker_timeout=STALLED_AFTER_SECONDS,
                    install_signal_handlers=False,
                    listen_notify=listen != "polling",
                    fetch_job_polling_interval=settings.job_polling_interval,
                    delete_jobs="successful",
                    worker_middleware=[count_jobs],
                )
            )
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({run, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                run.cancel()
                await asyncio.gather(run, return_exceptions=True)
                break
            stopping.cancel()
            error = run.exception() if not run.cancelled() else None
            backoff = 1.0 if loop.time() - started > 60 else min(backoff * 2, 30.0)
            log.error("worker.restarting", error=type(error).__name__ if error else None,
                      in_seconds=backoff)  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=backoff)
        log.info("worker.stopped")


# A heartbeat is written every HEARTBEAT_SECONDS: one this old means no worker is running.
CHECK_MAX_AGE_SECONDS = 30

FRESH_HEARTBEATS = """
SELECT count(*) FROM procrastinate_workers
 WHERE last_heartbeat > now() - make_interval(secs => %s)
"""


async def fresh_heartbeats(conninfo: str, max_age: float) -> int:
    """How many procrastinate workers wrote a heartbeat in the last `max_age` seconds."""
    import psycopg

    async with asyncio.timeout(10):
        async with await psycopg.AsyncConnection.connect(
            conninfo, autocommit=True, connect_timeout=5
        ) as conn:
            cur = await conn.execute(FRESH_HEARTBEATS, (max_age,))
            row = await cur.fetchone()
    return int(row[0]) if row else 0


def check_worker(settings: Settings, max_age: float) -> int:
    """`bitloot worker --check`: 0 when a worker heartbeat is younger than `max_age` seconds
    (procrastinate_workers.last_heartbeat), 1 otherwise; the compose and systemd health
    check. It needs only DATABASE_URL."""
    import psycopg

    from bitloot.db.connect import database_url

    try:
        alive = asyncio.run(fresh_heartbeats(database_url(settings), max_age))
    except (psycopg.Error, OSError, TimeoutError) as exc:
        raise CommandError(f"cannot reach the database: {first_line(exc)}") from None
    if not alive:
        print(f"bitloot: no worker heartbeat in the last {max_age:g} s", file=sys.stderr)
        return 1
    print(f"ok: {alive} worker(s) with a heartbeat in the last {max_age:g} s")
    return 0


def require_mail_transport(settings: Settings) -> None:
    """Refuse to start without an explicit mail transport: the default folder of `.eml`
    files would swallow every delivery email of a production that forgot its SMTP URL.
    (`bitloot demo` and `bitloot up` set BITLOOT_MAIL_DIR for their workers.)"""
    if settings.smtp_url is None and settings.mail_dir is None:
        raise CommandError(
            "BITLOOT_SMTP_URL (a mail server) or BITLOOT_MAIL_DIR (a folder of .eml files)"
            " is required for `bitloot worker`: neither is set"
        )


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """`bitloot worker`."""
    if args.check:
        return check_worker(settings, args.max_age)
    settings.require("kinguin_api_key")
    require_mail_transport(settings)
    configure_logging(settings.log_format)
    queues = (
        [q.strip() for q in args.queues.split(",") if q.strip()]
        if args.queues
        else list(ALL_QUEUES)
    )
    unknown = sorted(set(queues) - set(ALL_QUEUES))
    if unknown:
        raise CommandError(f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(ALL_QUEUES)}")
    asyncio.run(run_worker(settings, concurrency=args.concurrency, queues=queues))
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `bitloot worker`."""
    worker = sub.add_parser("worker", help="run a job worker (fulfillment, email, maintenance)")
    worker.add_argument("--concurrency", type=int, default=4, help="jobs run at once")
    worker.add_argument(
        "--queues", default="", help=f"comma list (default: {','.join(ALL_QUEUES)})"
    )
    worker.add_argument(
        "--check",
        action="store_true",
        help="health check: exit 0 if a worker heartbeat is fresh in the database, else 1",
    )
    worker.add_argument(
        "--max-age",
        type=float,
        default=CHECK_MAX_AGE_SECONDS,
        help=f"with --check: seconds a heartbeat stays fresh ({CHECK_MAX_AGE_SECONDS})",
    )
    worker.set_defaults(handler=cmd_worker)
