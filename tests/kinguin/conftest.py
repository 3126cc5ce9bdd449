"""Shared fixtures for the webhook and fulfillment tests: a worker-side `Resources` against the
in-process simulator, paid orders made in SQL, and the simulator's control API."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp
import psycopg
import pytest
import waiting
from harness import COVERING_PAYMENT
from psycopg_pool import AsyncConnectionPool

from bitloot.auth.tokens import TokenVerifier
from bitloot.config import Settings
from bitloot.db.connect import open_pool
from bitloot.kinguin.client import KinguinClient
from bitloot.kinguin.models import dump_json, load_json
from bitloot.resources import Resources
from bitloot.sim.app import SimConfig
from bitloot.sim.kinguin_catalog import TEXT_PRODUCT_ID
from bitloot.storage.factory import open_storage
from bitloot.vault.crypto import LOCAL_URL_PURPOSE, MasterKeyRing

Conn = psycopg.AsyncConnection[Any]


@dataclass
class SimControl:
    """The Kinguin simulator's control API (`/kinguin/sim/...`)."""

    base: str
    http: aiohttp.ClientSession

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else dump_json(body)
        async with self.http.request(method, f"{self.base}/sim{path}", data=data) as resp:
            assert resp.status < 300, f"{method} {path}: {resp.status} {await resp.text()}"
            return load_json(await resp.read())

    async def orders(self, external_id: uuid.UUID | str | None = None) -> list[dict[str, Any]]:
        """Every order the sim recorded (optionally only those for one orderExternalId)."""
        orders: list[dict[str, Any]] = (await self.call("GET", "/orders?include_keys=1"))["orders"]
        if external_id is None:
            return orders
        return [o for o in orders if o["orderExternalId"] == str(external_id)]


@pytest.fixture
async def sim_ctl(sim: Any) -> AsyncIterator[SimControl]:
    async with aiohttp.ClientSession() as http:
        yield SimControl(f"{sim.url}/kinguin", http)


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[AsyncConnectionPool]:
    p = open_pool(db_url, min_size=1, max_size=4)
    await p.open(wait=True)
    yield p
    await p.close()


@dataclass
class KinguinCalls:
    """Every HTTP attempt the runtime's client made: (endpoint, outcome)."""

    calls: list[tuple[str, str]] = field(default_factory=list)

    def record(self, endpoint: str, _seconds: float, outcome: str) -> None:
        self.calls.append((endpoint, outcome))

    def count(self, endpoint: str) -> int:
        return sum(1 for e, _ in self.calls if e == endpoint)


@pytest.fixture
def kinguin_calls() -> KinguinCalls:
    return KinguinCalls()


@pytest.fixture
async def runtime(
    make_settings: Callable[..., Settings],
    pool: AsyncConnectionPool,
    sim: Any,
    kinguin_calls: KinguinCalls,
) -> AsyncIterator[Resources]:
    """What `bitloot worker` installs, built against this test's database and simulator."""
    settings = make_settings()
    assert settings.master_keys is not None
    ring = MasterKeyRing.parse(settings.master_keys.get_secret_value())
    storage = await open_storage(
        settings.effective_storage_url,
        public_url=settings.public_url,
        signing_keys=ring.derived_keys(LOCAL_URL_PURPOSE),
    )
    kinguin = KinguinClient(
        f"{sim.url}/kinguin",
        SimConfig().kinguin_api_key,
        timeout=5,
        backoff_base=0.01,
        backoff_max=0.05,
        on_call=kinguin_calls.record,
    )
    verifier = TokenVerifier(settings)
    async with kinguin:
        yield Resources(
            settings=settings,
            pool=pool,
            kinguin=kinguin,
            storage=storage,
            ring=ring,
            tokens=verifier,
        )
    await storage.close()


PaidOrder = Callable[..., Awaitable[uuid.UUID]]


@pytest.fixture
def paid_order(conn: Conn) -> PaidOrder:
    """Make an order `paid` without the payment flow: rows in SQL, created -> waiting -> paid."""

    async def make(
        product_id: str = TEXT_PRODUCT_ID,
        qty: int = 1,
        max_cost: Decimal = Decimal("15.00"),
        text_only: bool = True,
    ) -> uuid.UUID:
        await conn.execute(
            "INSERT INTO products (product_id, name, price, currency, max_cost, text_only)"
            " VALUES (%s, 'Sim game', 19.99, 'eur', %s, %s) ON CONFLICT DO NOTHING",
            (product_id, max_cost, text_only),
        )
        cur = await conn.execute(
            "INSERT INTO orders (email, currency, total_amount) VALUES"
            " ('buyer@example.com', 'eur', %s) RETURNING id",
            (Decimal("19.99") * qty,),
        )
        row = await cur.fetchone()
        assert row is not None
        order_id: uuid.UUID = row[0]
        await conn.execute(
            "INSERT INTO order_items (order_id, product_id, qty, unit_price, max_cost, name)"
            " VALUES (%s, %s, %s, 19.99, %s, 'Sim game')",
            (order_id, product_id, qty, max_cost),
        )
        await conn.execute("UPDATE orders SET status = 'waiting' WHERE id = %s", (order_id,))
        await conn.execute(COVERING_PAYMENT, (order_id,))
        await conn.execute("UPDATE orders SET status = 'paid' WHERE id = %s", (order_id,))
        return order_id

    return make


async def fetch_one(conn: Conn, sql: str, *params: Any) -> Any:
    """The first row of a query (a tuple), asserting there is one."""
    cur = await conn.execute(sql, params)
    row = await cur.fetchone()
    assert row is not None, sql
    return row


@pytest.fixture
def one() -> Callable[..., Awaitable[Any]]:
    """`await one(conn, sql, *params)`: the first row (a tuple) of a query."""
    return fetch_one


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Poll `check` until it holds (or fail after `timeout` seconds)."""
    await waiting.wait_until(check, timeout, "condition")


@pytest.fixture
def eventually() -> Callable[..., Awaitable[None]]:
    """`await eventually(check)`: poll an async predicate until it holds."""
    return wait_until
