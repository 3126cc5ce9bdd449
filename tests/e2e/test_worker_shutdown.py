"""SIGTERM stops a worker gracefully: it fetches nothing new and finishes the job it runs."""

from __future__ import annotations

import signal

import aiohttp
import psycopg
from stack import Stack
from waiting import wait_until

from bitloot.sim.kinguin_catalog import TEXT_PRODUCT_ID


async def test_sigterm_lets_the_running_job_finish(stack: Stack) -> None:
    await stack.start_sim()
    await stack.start_api()
    stack.start_worker()
    async with aiohttp.ClientSession() as http:
        # Slow Kinguin down so that the job is surely running when SIGTERM arrives.
        async with http.post(
            f"{stack.sim}/kinguin/sim/faults/latency",
            json={"seconds": 3, "count": 1, "endpoints": ["place_order"]},
        ) as r:
            assert r.status < 300
        order = await stack.create_order(http, [{"productId": TEXT_PRODUCT_ID, "qty": 1}])
        await stack.pay(http, order["id"])

        def placement_started() -> bool:
            with psycopg.connect(stack.db_url) as conn:
                row = conn.execute(
                    "SELECT kinguin_placement_started_at FROM orders WHERE id = %s", (order["id"],)
                ).fetchone()
            return row is not None and row[0] is not None

        await wait_until(placement_started, 30, "the job commits its placement marker")
        with psycopg.connect(stack.db_url) as conn:
            running = conn.execute(
                "SELECT (SELECT count(*) FROM procrastinate_jobs"
                "   WHERE task_name = 'fulfill_order' AND status = 'doing'),"
                " (SELECT count(*) FROM kinguin_orders WHERE order_id = %s)",
                (order["id"],),
            ).fetchone()
        assert running == (1, 0), "the job is not mid-placement: SIGTERM would test nothing"
        assert stack.kill("worker", signal.SIGTERM, timeout=60) == 0
        # The job that was running finished its step: the Kinguin order is bought and recorded.
        with psycopg.connect(stack.db_url) as conn:
            recorded = conn.execute(
                "SELECT count(*) FROM kinguin_orders WHERE order_id = %s", (order["id"],)
            ).fetchone()
            doing = conn.execute(
                "SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing'"
            ).fetchone()
        assert recorded == (1,)
        assert doing == (0,)  # nothing left half-done for the stalled-job sweeper
        log = stack.log_text("worker")
        assert "worker.stopped" in log
