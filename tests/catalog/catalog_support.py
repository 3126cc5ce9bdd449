"""Helpers of the catalog tests: the seeded catalog, the Kinguin simulator's product
controls, and small HTTP and SQL helpers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aiohttp
import psycopg
from harness import Served

from bitloot.catalog import tasks
from bitloot.config import Settings
from bitloot.kinguin.models import dump_json, load_json
from bitloot.resources import install, open_resources
from bitloot.sim.kinguin_catalog import MIXED_PRODUCT_ID, TEXT_PRODUCT_ID

Conn = psycopg.AsyncConnection[Any]
StartApi = Callable[..., Awaitable[Served]]

# (productId, name, our price, max_cost, text_only, active). In the simulator the text
# product's cheapest offer is 9.49 EUR (500 keys, all text), the mixed one's 12.90 EUR.
TEXT = TEXT_PRODUCT_ID
MIXED = MIXED_PRODUCT_ID
RETIRED = "5c9b5f6b2539a4e8f17200ff"
CATALOG = [
    (TEXT, "Stardew Valley", "14.99", "12.00", True, True),
    (MIXED, "Cyberpunk 2077", "19.99", "15.00", False, True),
    (RETIRED, "Old game", "4.99", "4.00", True, False),
]


@dataclass
class KinguinSim:
    """The Kinguin simulator's control API (`/kinguin/sim/...`)."""

    base: str
    http: aiohttp.ClientSession

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else dump_json(body)
        async with self.http.request(method, f"{self.base}/sim{path}", data=data) as resp:
            assert resp.status < 300, f"{method} {path}: {resp.status} {await resp.text()}"
            return load_json(await resp.read())

    async def change(self, product_id: str, **change: Any) -> Any:
        """Change the product's offers; unless `notify=False`, it sends product.update."""
        return await self.call("POST", f"/products/{product_id}", change)

    async def reads(self, product_id: str) -> int:
        """How often GET /v2/products read the product."""
        return int((await self.call("GET", f"/products/{product_id}"))["reads"])


async def post_order(
    http: aiohttp.ClientSession, api: Served, product_id: str, qty: int = 1
) -> tuple[int, Any, aiohttp.ClientResponse]:
    body = {"email": "ada@example.com", "items": [{"productId": product_id, "qty": qty}]}
    async with http.post(f"{api.url}/orders", json=body) as resp:
        return resp.status, await resp.json(content_type=None), resp


async def scalar(conn: Conn, sql: str, *params: Any) -> Any:
    cur = await conn.execute(sql, params)
    row = await cur.fetchone()
    assert row is not None
    return row[0]


async def one_row(conn: Conn, sql: str, *params: Any) -> tuple[Any, ...]:
    cur = await conn.execute(sql, params)
    row = await cur.fetchone()
    assert row is not None
    return tuple(row)


async def refresh(make_settings: Callable[..., Settings]) -> dict[str, int]:
    """Run the refresh job as a worker would: its resources installed, the task called."""
    async with AsyncExitStack() as stack:
        install(await open_resources(make_settings(), stack, kinguin=True))
        try:
            result: dict[str, int] = await tasks.refresh_catalog(timestamp=0)
        finally:
            install(None)
    return result
