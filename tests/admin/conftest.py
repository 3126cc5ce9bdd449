"""Fixtures of the admin endpoint tests: an HTTP client and tokens for the running API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from admin_support import Tokens

from bitloot.config import Settings
from bitloot.kinguin.client import KinguinClient
from bitloot.resources import Resources
from bitloot.sim.app import SimConfig
from bitloot.web.context import RESOURCES


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def tokens(api: Any, make_settings: Callable[..., Settings]) -> Tokens:
    return Tokens(make_settings(), api)


@pytest.fixture
async def runtime(api: Any, sim: Any) -> AsyncIterator[Resources]:
    """A worker's resources: the API's pool, storage and keys, and a Kinguin client."""
    ctx = api.app[RESOURCES]
    async with aiohttp.ClientSession() as http:
        # Keys at once, so one fulfillment pass is enough.
        async with http.post(
            f"{sim.url}/kinguin/sim/delivery", json={"delay": 0, "gradual": False}
        ) as resp:
            assert resp.status < 300, await resp.text()
    kinguin = KinguinClient(
        f"{sim.url}/kinguin",
        SimConfig().kinguin_api_key,
        timeout=5,
        backoff_base=0.01,
        backoff_max=0.05,
    )
    async with kinguin:
        yield Resources(
            settings=ctx.settings,
            pool=ctx.pool,
            kinguin=kinguin,
            storage=ctx.storage,
            ring=ctx.ring,
            tokens=ctx.tokens,
        )
