"""Fixtures of the catalog tests: the simulator's product controls, a seeded catalog, and an
API started with the settings a test needs (on the port the simulator sends webhooks to)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from catalog_support import CATALOG, Conn, KinguinSim, StartApi
from harness import Served, serve_app

from bitloot.config import Settings
from bitloot.server import build_app


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def kinguin(sim: Served, http: aiohttp.ClientSession) -> KinguinSim:
    return KinguinSim(f"{sim.url}/kinguin", http)


@pytest.fixture
async def catalog(conn: Conn) -> None:
    for product_id, name, price, max_cost, text_only, active in CATALOG:
        await conn.execute(
            "INSERT INTO products (product_id, name, price, currency, max_cost, text_only,"
            " active) VALUES (%s, %s, %s, 'eur', %s, %s, %s)",
            (product_id, name, Decimal(price), Decimal(max_cost), text_only, active),
        )


@pytest.fixture
async def start_api(
    make_settings: Callable[..., Settings], api_port: int
) -> AsyncIterator[StartApi]:
    """Serve the API with these settings on `api_port` (where the simulator's webhooks go)."""
    started: list[Served] = []

    async def start(**overrides: Any) -> Served:
        served = await serve_app(await build_app(make_settings(**overrides)), api_port)
        started.append(served)
        return served

    yield start
    for served in started:
        await served.runner.cleanup()
