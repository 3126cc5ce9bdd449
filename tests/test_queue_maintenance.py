"""The queue's own periodic jobs (`bitloot.queue_maintenance`) on a real database: jobs of
workers that stopped sending heartbeats go back to `todo`, finished jobs are pruned after a
week and failed ones after a month.

Everything goes through procrastinate's job manager on `queue_app`, opened on the test's
pool: workers register and jobs are fetched with procrastinate's own SQL functions, and each
maintenance job is deferred, fetched by a live worker and called with the `JobContext` a
worker builds. Only times are moved back with SQL (heartbeats, job events)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import procrastinate
import psycopg
import pytest
from procrastinate import JobContext
from procrastinate.jobs import Job, Status
from procrastinate.tasks import Task
from psycopg_pool import AsyncConnectionPool

import bitloot.fulfillment.tasks  # noqa: F401 - registers fulfill_order on queue_app
from bitloot.db.connect import open_pool
from bitloot.queue import FULFILLMENT_QUEUE, MAINTENANCE_QUEUE, queue_app
from bitloot.queue_maintenance import STALLED_AFTER_SECONDS, prune_jobs, retry_stalled_jobs

Conn = psycopg.AsyncConnection[Any]


@pytest.fixture
async def queue(db_url: str) -> AsyncIterator[None]:
    """`queue_app` opened on a pool of this test's database, as `bitloot worker` opens it.

    On a connector of its own, put back afterwards: procrastinate's connector keeps an
    external pool after `close_async`, so the module's one could not be opened again on the
    next test's database (and would leak this test's closed pool into later tests)."""
    pool: AsyncConnectionPool = open_pool(db_url, min_size=1, max_size=4)
    await pool.open(wait=True)
    try:
        with queue_app.replace_connector(procrastinate.PsycopgConnector()):
            async with queue_app.open_async(pool):
                yield
    finally:
        await pool.close()


async def register_worker(conn: Conn, heartbeat_age: float | None = None) -> int:
    """A worker row (procrastinate's register), its last heartbeat `heartbeat_age` s ago."""
    worker_id = await queue_app.job_manager.register_worker()
    if heartbeat_age is not None:
        await conn.execute(
            "UPDATE procrastinate_workers SET last_heartbeat = now() - make_interval(secs => %s)"
            " WHERE id = %s",
            (heartbeat_age, worker_id),
        )
    return worker_id


async def started_job(order: str, worker_id: int) -> Job:
    """A `fulfill_order` job deferred, then fetched (`doing`) by `worker_id`."""
    job_id = await defer(order)
    job = await queue_app.job_manager.fetch_job(queues=[FULFILLMENT_QUEUE], worker_id=worker_id)
    assert job is not None and job.id == job_id
    return job


async def defer(order: str) -> int:
    deferrer = queue_app.configure_task("fulfill_order", lock=f"order:{order}")
    return await deferrer.defer_async(order_id=order)


async def run_maintenance(task: Task[Any, Any, Any], worker_id: int) -> Any:
    """Run a maintenance task the way a worker does: deferred on its queue, fetched by
    `worker_id`, called with a `JobContext` and its job's own arguments, then finished."""
    await task.defer_async(timestamp=int(time.time()))
    manager = queue_app.job_manager
    job = await manager.fetch_job(queues=[MAINTENANCE_QUEUE], worker_id=worker_id)
    assert job is not None and job.task_name == task.name
    context = JobContext(
        app=queue_app,
        worker_name="test-worker",
        worker_queues=[MAINTENANCE_QUEUE],
        job=job,
        start_timestamp=time.time(),
        abort_reason=lambda: None,
    )
    result = await task(context, **job.task_kwargs)
    await manager.finish_job(job, Status.SUCCEEDED, delete_job=False)
    return result


async def job_state(conn: Conn, job_id: int | None) -> tuple[str, int, int | None]:
    """(status, attempts, worker id) of one job."""
    cur = await conn.execute(
        "SELECT status::text, attempts, worker_id FROM procrastinate_jobs WHERE id = %s",
        (job_id,),
    )
    row = await cur.fetchone()
    assert row is not None
    return row[0], row[1], row[2]


# --- 5. stalled jobs ----------------------------------------------------------------------


async def test_jobs_of_silent_workers_go_back_to_the_queue(queue: None, conn: Conn) -> None:
    dead = await register_worker(conn, heartbeat_age=STALLED_AFTER_SECONDS + 5)
    slow = await register_worker(conn, heartbeat_age=STALLED_AFTER_SECONDS - 5)
    gone = await register_worker(conn)  # a worker pruned by another: its jobs point nowhere
    alive = await register_worker(conn)

    of_dead = await started_job("a", dead)
    of_slow = await started_job("b", slow)
    of_gone = await started_job("c", gone)
    await conn.execute("SELECT procrastinate_unregister_worker_v1(%s)", (gone,))
    assert await job_state(conn, of_gone.id) == ("doing", 0, None)
    waiting = await defer("d")

    await queue_app.job_manager.update_heartbeat(alive)
    assert await run_maintenance(retry_stalled_jobs, alive) == 2

    assert (await job_state(conn, of_dead.id))[:2] == ("todo", 1)
    assert (await job_state(conn, of_gone.id))[:2] == ("todo", 1)
    assert await job_state(conn, of_slow.id) == ("doing", 0, slow)
    assert await job_state(conn, waiting) == ("todo", 0, None)
    cur = await conn.execute(
        "SELECT job_id, type::text FROM procrastinate_events"
        " WHERE type = 'deferred_for_retry' ORDER BY job_id"
    )
    assert await cur.fetchall() == [(of_dead.id, "deferred_for_retry"),
                                    (of_gone.id, "deferred_for_retry")]  # fmt: skip

    # Back in the queue for real: the next fetch of any worker takes it again, with its lock.
    again = await queue_app.job_manager.fetch_job(queues=[FULFILLMENT_QUEUE], worker_id=alive)
    assert again is not None
    assert (again.id, again.lock, again.task_kwargs) == (of_dead.id, "order:a", {"order_id": "a"})

    # The slow worker's job is left to it, and a run with nothing stalled retries nothing.
    await queue_app.job_manager.update_heartbeat(alive)
    await queue_app.job_manager.update_heartbeat(slow)
    assert await run_maintenance(retry_stalled_jobs, alive) == 0
    assert await job_state(conn, of_slow.id) == ("doing", 0, slow)


# --- 6. pruning ---------------------------------------------------------------------------


async def test_finished_jobs_are_pruned_after_a_week_failed_ones_after_a_month(
    queue: None, conn: Conn
) -> None:
    manager = queue_app.job_manager
    worker = await register_worker(conn)

    async def job(name: str, end: Status | None, days: float) -> int:
        """A job that ended in `end` (None: still `todo`) `days` ago."""
        if end is None:
            job_id = await defer(name)
        elif end is Status.CANCELLED:
            job_id = await defer(name)
            assert await manager.cancel_job_by_id_async(job_id)
        else:
            started = await started_job(name, worker)
            await manager.finish_job(started, end, delete_job=False)
            assert started.id is not None
            job_id = started.id
        await conn.execute(
            "UPDATE procrastinate_events SET at = now() - make_interval(days => %s)"
            " WHERE job_id = %s",
            (days, job_id),
        )
        return job_id

    jobs = {
        "succeeded_8d": await job("s8", Status.SUCCEEDED, 8),
        "succeeded_6d": await job("s6", Status.SUCCEEDED, 6),
        "failed_8d": await job("f8", Status.FAILED, 8),
        "failed_29d": await job("f29", Status.FAILED, 29),
        "failed_31d": await job("f31", Status.FAILED, 31),
        "cancelled_8d": await job("c8", Status.CANCELLED, 8),
        "cancelled_31d": await job("c31", Status.CANCELLED, 31),
    }
    # A job that failed long ago but was retried (an admin retry) and has just succeeded:
    # its last event counts.
    retried = await job("r", Status.FAILED, 40)
    await manager.retry_job_by_id_async(retried, retry_at=datetime.now(UTC))
    started = await manager.fetch_job(queues=[FULFILLMENT_QUEUE], worker_id=worker)
    assert started is not None and started.id == retried
    await manager.finish_job(started, Status.SUCCEEDED, delete_job=False)
    jobs["retried_40d_succeeded_now"] = retried
    jobs["todo_40d"] = await job("t40", None, 40)  # waiting, however old: never pruned

    await run_maintenance(prune_jobs, worker)

    cur = await conn.execute("SELECT id FROM procrastinate_jobs")
    left = {row[0] for row in await cur.fetchall()}
    assert {name for name, job_id in jobs.items() if job_id in left} == {
        "succeeded_6d",
        "failed_8d",
        "failed_29d",
        "cancelled_8d",
        "todo_40d",
        "retried_40d_succeeded_now",
    }
    # The prune job itself has just finished: it stays for the next week.
    cur = await conn.execute(
        "SELECT status::text FROM procrastinate_jobs WHERE task_name = 'prune_jobs'"
    )
    assert await cur.fetchall() == [("succeeded",)]
    # Their events went with the pruned jobs.
    assert await (
        await conn.execute(
            "SELECT count(*) FROM procrastinate_events e"
            " WHERE NOT EXISTS (SELECT 1 FROM procrastinate_jobs j WHERE j.id = e.job_id)"
        )
    ).fetchone() == (0,)


async def test_a_stalled_job_whose_queueing_lock_is_waiting_again_is_superseded(
    queue: None, conn: Conn
) -> None:
    """A deliver_webhooks job killed mid-run while a new event queued the pair's next job:
    the two cannot both wait (one queueing lock), and the waiting one does the work. The
    stalled one ends `aborted` (not a failure for admins) and the waiting one can run."""
    dead = await register_worker(conn, heartbeat_age=STALLED_AFTER_SECONDS + 5)
    alive = await register_worker(conn)
    pair = (uuid.uuid4(), uuid.uuid4())
    await conn.execute("SELECT bitloot_defer_webhook_job(%s, %s)", pair)
    stalled = await queue_app.job_manager.fetch_job(queues=["webhooks"], worker_id=dead)
    assert stalled is not None
    await conn.execute("SELECT bitloot_defer_webhook_job(%s, %s)", pair)  # a new event
    cur = await conn.execute("SELECT id FROM procrastinate_jobs WHERE status = 'todo'")
    ((waiting,),) = await cur.fetchall()

    await queue_app.job_manager.update_heartbeat(alive)
    assert await run_maintenance(retry_stalled_jobs, alive) == 1

    assert (await job_state(conn, stalled.id))[0] == "aborted"
    assert (await job_state(conn, waiting))[:2] == ("todo", 0)
    again = await queue_app.job_manager.fetch_job(queues=["webhooks"], worker_id=alive)
    assert again is not None and again.id == waiting
