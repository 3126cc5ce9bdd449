"""Fixtures for the customer endpoints: a `Shop` over the test's API and simulators."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from shop_support import Conn, Shop, seed_products

from bitloot.kinguin.client import KinguinClient
from bitloot.resources import Resources
from bitloot.sim.app import SimConfig
from bitloot.web.context import RESOURCES


@pytest.fixture
async def shop(api: Any, sim: Any, conn: Conn) -> AsyncIterator[Shop]:
    """A `Shop` over the test's API (default settings), simulators and database."""
    ctx = api.app[RESOURCES]
    await seed_products(conn)
    async with aiohttp.ClientSession() as http:
        # Keys at once, so one fulfillment pass is enough.
        async with http.post(
            f"{sim.url}/kinguin/sim/delivery", json={"delay": 0, "gradual": False}
        ) as resp:
            assert resp.status < 300, await resp.text()
        kinguin = KinguinClient(
            f"{sim.url}/kinguin", SimConfig().kinguin_api_key, timeout=5, backoff_base=0.01
        )
        async with kinguin:
            runtime = Resources(
                settings=ctx.settings,
                pool=ctx.pool,
                kinguin=kinguin,
                storage=ctx.storage,
                ring=ctx.ring,
                tokens=ctx.tokens,
            )
            yield Shop(api.url, sim.url, http, conn, ctx, runtime)
