"""Helpers of the refund and accept-payment tests: orders bought from the Kinguin simulator,
underpaid orders with their payments, a worker that runs the queued jobs in this process,
and the simulator's control API."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import aiohttp
import procrastinate
import psycopg
from harness import COVERING_PAYMENT

import bitloot.fulfillment.tasks  # noqa: F401 - registers fulfill_order on queue_app
from bitloot.fulfillment.service import run_fulfillment
from bitloot.kinguin.models import dump_json, load_json
from bitloot.queue import FULFILLMENT_QUEUE, queue_app
from bitloot.resources import Resources, install
from bitloot.sim.kinguin_catalog import TEXT_PRODUCT_ID

Conn = psycopg.AsyncConnection[Any]

PRICE = Decimal("19.99")
BTC_DUE = Decimal("0.000320")


async def run_jobs(runtime: Resources) -> None:
    """Run every job of the fulfillment queue that is due, as `bitloot worker` would, and
    return when none is left (jobs are kept, to be inspected)."""
    with queue_app.replace_connector(procrastinate.PsycopgConnector()):
        async with queue_app.open_async(runtime.pool):
            install(runtime)
            try:
                await queue_app.run_worker_async(
                    queues=[FULFILLMENT_QUEUE],
                    wait=False,
                    install_signal_handlers=False,
                    delete_jobs="never",
                )
            finally:
                install(None)


class SimControl:
    """The Kinguin simulator's control API."""

    def __init__(self, sim_url: str, http: aiohttp.ClientSession) -> None:
        self.base = f"{sim_url}/kinguin/sim"
        self.http = http

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else dump_json(body)
        async with self.http.request(method, f"{self.base}{path}", data=data) as resp:
            assert resp.status < 300, f"{method} {path}: {resp.status} {await resp.text()}"
            return load_json(await resp.read())

    async def orders_for(self, order_id: uuid.UUID) -> list[dict[str, Any]]:
        orders: list[dict[str, Any]] = (await self.call("GET", "/orders"))["orders"]
        return [o for o in orders if o["orderExternalId"] == str(order_id)]

    async def key_statuses(self, order_id: uuid.UUID) -> list[str]:
        (placed,) = await self.orders_for(order_id)
        return [k["status"] for p in placed["products"] for k in p["keys"]]


async def seed_product(conn: Conn) -> None:
    await conn.execute(
        "INSERT INTO products (product_id, name, price, currency, max_cost, text_only)"
        " VALUES (%s, 'Sim game', %s, 'eur', 15.00, true) ON CONFLICT DO NOTHING",
        (TEXT_PRODUCT_ID, PRICE),
    )


async def waiting_order(conn: Conn, *, email: str = "ada@example.com") -> uuid.UUID:
    """An order of one sim product, awaiting payment."""
    await seed_product(conn)
    cur = await conn.execute(
        "INSERT INTO orders (email, currency, total_amount) VALUES (%s, 'eur', %s) RETURNING id",
        (email, PRICE),
    )
    row = await cur.fetchone()
    assert row is not None
    order_id: uuid.UUID = row[0]
    await conn.execute(
        "INSERT INTO order_items (order_id, product_id, qty, unit_price, max_cost, name)"
        " VALUES (%s, %s, 1, %s, 15.00, 'Stardew Valley')",
        (order_id, TEXT_PRODUCT_ID, PRICE),
    )
    await conn.execute("UPDATE orders SET status = 'waiting' WHERE id = %s", (order_id,))
    return order_id


async def paid_order(conn: Conn) -> uuid.UUID:
    """Paid by a covering payment (no acceptance), fulfillment pending."""
    order_id = await waiting_order(conn)
    await conn.execute(COVERING_PAYMENT, (order_id,))
    await conn.execute("UPDATE orders SET status = 'paid' WHERE id = %s", (order_id,))
    return order_id


async def fulfilled_order(conn: Conn, runtime: Resources) -> uuid.UUID:
    """Paid, and bought from the Kinguin simulator by one fulfillment pass."""
    order_id = await paid_order(conn)
    await run_fulfillment(runtime, order_id)
    assert await scalar(conn, "SELECT status FROM orders WHERE id = %s", order_id) == "fulfilled"
    return order_id


async def underpaid_order(conn: Conn, *, paid_btc: Decimal | None = BTC_DUE / 2) -> uuid.UUID:
    """Underpaid: a partially_paid payment of `paid_btc` of the BTC due (none when None)."""
    order_id = await waiting_order(conn)
    if paid_btc is not None:
        await conn.execute(
            "INSERT INTO payments (payment_id, order_id, status, price_amount, price_currency,"
            " pay_amount, pay_currency, actually_paid)"
            " VALUES (%s, %s, 'partially_paid', %s, 'eur', %s, 'btc', %s)",
            (f"short-{order_id.hex[:8]}", order_id, PRICE, BTC_DUE, paid_btc),
        )
    await conn.execute(
        "UPDATE orders SET status = 'underpaid', status_reason = 'paid less' WHERE id = %s",
        (order_id,),
    )
    return order_id


async def scalar(conn: Conn, sql: str, *params: Any) -> Any:
    cur = await conn.execute(sql, params)
    row = await cur.fetchone()
    assert row is not None, sql
    return row[0]


async def rows(conn: Conn, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    cur = await conn.execute(sql, params)
    return await cur.fetchall()
