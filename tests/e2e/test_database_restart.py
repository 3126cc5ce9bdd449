"""The API and the workers ride out a PostgreSQL restart without being restarted."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from stack import Stack

from bitloot.db.embedded import ensure_embedded_server, stop_embedded_server
from bitloot.sim.kinguin_catalog import TEXT_PRODUCT_ID


async def test_api_and_worker_survive_a_database_restart(stack: Stack, pg_server: Any) -> None:
    await stack.start_sim()
    await stack.start_api()
    worker = stack.start_worker()
    async with aiohttp.ClientSession() as http:
        first = await stack.create_order(http, [{"productId": TEXT_PRODUCT_ID, "qty": 1}])
        await stack.pay(http, first["id"])
        await stack.wait_until([first["id"]])

        assert stop_embedded_server(pg_server.data_dir)
        await asyncio.sleep(2)
        ensure_embedded_server(pg_server.data_dir, database="postgres")
        await asyncio.sleep(1)

        second = await stack.create_order(http, [{"productId": TEXT_PRODUCT_ID, "qty": 1}])
        await stack.pay(http, second["id"])
        rows = await stack.wait_until([second["id"]], timeout=90)
    assert rows[second["id"]][:2] == ("fulfilled", "fulfilled"), stack.log_text("worker")[-2000:]
    assert worker.poll() is None  # the same worker process did it
