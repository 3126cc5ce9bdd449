"""The API and the workers ride out a PostgreSQL restart without being restarted."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import aiohttp
from stack import Stack
from waiting import wait_until

from bitloot.db.embedded import ensure_embedded_server, stop_embedded_server
from bitloot.sim.kinguin_catalog import TEXT_PRODUCT_ID


async def readyz(http: aiohttp.ClientSession, stack: Stack) -> int:
    """The status of the API's /readyz (200 only when the database answers)."""
    async with http.get(f"{stack.api}/readyz") as resp:
        return resp.status


def database_errors(log: str) -> list[str]:
    """The warnings and errors about the database (the queue's or the pool's) in a JSON log."""
    lines = []
    for text in log.splitlines():
        with contextlib.suppress(ValueError):  # not JSON, or still being written
            lines.append(json.loads(text))
    return [
        str(line["event"])
        for line in lines
        if isinstance(line, dict)
        and line.get("level") in ("warning", "error")
        and str(line.get("logger", "")).startswith(("procrastinate", "psycopg"))
    ]


async def test_api_and_worker_survive_a_database_restart(stack: Stack, pg_server: Any) -> None:
    await stack.start_sim()
    await stack.start_api()
    worker = stack.start_worker()
    async with aiohttp.ClientSession() as http:
        first = await stack.create_order(http, [{"productId": TEXT_PRODUCT_ID, "qty": 1}])
        await stack.pay(http, first["id"])
        await stack.wait_until([first["id"]])

        seen = len(stack.log_text("worker"))
        assert stop_embedded_server(pg_server.data_dir)
        # Both notice the outage: the API is not ready, the worker logs its connection failing.

        async def api_down() -> bool:
            return await readyz(http, stack) == 503

        async def api_up() -> bool:
            return await readyz(http, stack) == 200

        await wait_until(api_down, 30, "the API reports the outage")
        await wait_until(
            lambda: database_errors(stack.log_text("worker")[seen:]), 30, "the worker notices"
        )
        ensure_embedded_server(pg_server.data_dir, database="postgres")
        await wait_until(api_up, 60, "the API is ready again")

        second = await stack.create_order(http, [{"productId": TEXT_PRODUCT_ID, "qty": 1}])
        await stack.pay(http, second["id"])
        rows = await stack.wait_until([second["id"]], timeout=90)
    assert rows[second["id"]][:2] == ("fulfilled", "fulfilled"), stack.log_text("worker")[-2000:]
    assert worker.poll() is None  # the same worker process did it
    assert "worker.restarting" in stack.log_text("worker")[seen:]  # its queue loop restarted
