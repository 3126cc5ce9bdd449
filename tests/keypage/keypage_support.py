"""Real orders for the key-page tests: created through the API, paid through the
NOWPayments simulator, and fulfilled by one in-process pass of the worker's pipeline."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import date
from decimal import Decimal
from typing import Any

import aiohttp
import psycopg
from harness import COVERING_PAYMENT

from bitloot.fulfillment.service import run_fulfillment
from bitloot.resources import Resources, open_resources
from bitloot.sim.kinguin_catalog import IMAGE_PRODUCT_ID, TEXT_PRODUCT_ID
from bitloot.web.app import SETTINGS

Conn = psycopg.AsyncConnection[Any]

# (productId, name, price, max cost, text_only): the image product yields only image keys.
PRODUCTS = [
    (TEXT_PRODUCT_ID, "Stardew Valley", "14.99", "12.00", True),
    (IMAGE_PRODUCT_ID, "Minecraft Gift Card", "29.99", "25.00", False),
]


async def seed_products(conn: Conn) -> None:
    for product_id, name, price, max_cost, text_only in PRODUCTS:
        await conn.execute(
            "INSERT INTO products (product_id, name, price, currency, max_cost, text_only)"
            " VALUES (%s, %s, %s, 'eur', %s, %s) ON CONFLICT DO NOTHING",
            (product_id, name, Decimal(price), Decimal(max_cost), text_only),
        )


async def create_order(api_url: str, items: list[dict[str, Any]]) -> uuid.UUID:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{api_url}/orders", json={"email": "ada@example.com", "items": items}) as r,
    ):
        body = await r.json()
        assert r.status == 201, body
        return uuid.UUID(body["id"])


async def order_state(conn: Conn, order_id: uuid.UUID) -> tuple[str, str]:
    cur = await conn.execute(
        "SELECT status, fulfillment_status FROM orders WHERE id = %s", (order_id,)
    )
    row = await cur.fetchone()
    assert row is not None
    return row[0], row[1]


async def pay(conn: Conn, sim_url: str, order_id: uuid.UUID, timeout: float = 30) -> None:
    """Pay the order's invoice in the simulator and wait for the API to mark it paid."""
    cur = await conn.execute("SELECT invoice_id FROM orders WHERE id = %s", (order_id,))
    row = await cur.fetchone()
    assert row is not None and row[0], "the order has no invoice"
    url = f"{sim_url}/nowpayments/sim/invoices/{row[0]}/pay"
    async with aiohttp.ClientSession() as http, http.post(url, json={"wait": True}) as r:
        assert r.status == 201, await r.text()
    deadline = time.monotonic() + timeout
    while (status := (await order_state(conn, order_id))[0]) != "paid":
        assert time.monotonic() < deadline, f"order not paid in {timeout}s: {status}"
        await asyncio.sleep(0.1)


@asynccontextmanager
async def worker_runtime(api_app: Any, sim_url: str) -> AsyncIterator[Resources]:
    """The resources `bitloot worker` opens (`open_worker_resources`), minus the queue."""
    settings = api_app[SETTINGS]
    async with AsyncExitStack() as stack:
        res = await open_resources(settings, stack, pool_size=2, kinguin=True)
        # Keys at once, so one or two passes of the pipeline fulfil the order.
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{sim_url}/kinguin/sim/delivery", json={"delay": 0, "gradual": False}) as r,
        ):
            assert r.status < 300, await r.text()
        yield res


async def fulfill(rt: Resources, conn: Conn, order_id: uuid.UUID, timeout: float = 30) -> None:
    """Run the fulfillment job's body until the order is fulfilled."""
    deadline = time.monotonic() + timeout
    while True:
        await run_fulfillment(rt, order_id)
        state = await order_state(conn, order_id)
        if state[1] == "fulfilled":
            return
        assert state[1] != "failed", f"fulfillment failed: {state}"
        assert time.monotonic() < deadline, f"not fulfilled in {timeout}s: {state}"
        await asyncio.sleep(0.2)


async def fulfilled_order(api: Any, sim: Any, conn: Conn, items: list[dict[str, Any]]) -> uuid.UUID:
    """A real order, paid and fulfilled."""
    await seed_products(conn)
    order_id = await create_order(api.url, items)
    await pay(conn, sim.url, order_id)
    async with worker_runtime(api.app, sim.url) as rt:
        await fulfill(rt, conn, order_id)
    return order_id


async def issued_keys(sim_url: str, order_id: uuid.UUID) -> dict[str, tuple[str, bytes]]:
    """What the Kinguin simulator issued for our order: key id -> (type, plaintext bytes)."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{sim_url}/kinguin/sim/orders?include_keys=1") as r,
    ):
        orders = (await r.json())["orders"]
    out: dict[str, tuple[str, bytes]] = {}
    for order in orders:
        if order.get("orderExternalId") != str(order_id):
            continue
        for product in order["products"]:
            for key in product["keys"]:
                kind = key.get("type", "text/plain")
                serial = key["serial"]
                plain = serial.encode() if kind == "text/plain" else base64.b64decode(serial)
                out[key["id"]] = (kind, plain)
    return out


async def access_events(conn: Conn, order_id: uuid.UUID) -> dict[str, int]:
    """key id -> number of key_access_events rows for this order."""
    cur = await conn.execute(
        "SELECT key_id, count(*) FROM key_access_events WHERE order_id = %s GROUP BY key_id",
        (order_id,),
    )
    return {row[0]: int(row[1]) for row in await cur.fetchall()}


# --- orders in a given state, written directly in SQL (the state machines allow each path) --

# What the customer was shown when ordering (order_items' snapshot), per product.
FACTS: dict[str, dict[str, Any]] = {
    TEXT_PRODUCT_ID: {
        "name": "Stardew Valley",
        "platform": "Steam",
        "regional_limitations": "EUROPE",
        "excluded_countries": ["CH", "NO"],
    },
    IMAGE_PRODUCT_ID: {
        "name": "Minecraft Gift Card",
        "platform": "Xbox Series X|S",
        "regional_limitations": "REGION FREE",
        "excluded_countries": [],
    },
}
PREORDER_RELEASE = date(2027, 3, 1)

# Each order status the page tells apart, as the transitions that reach it from `created`.
PATHS: dict[str, tuple[str, ...]] = {
    "created": (),
    "waiting": ("waiting",),
    "confirming": ("waiting", "confirming"),
    "paid": ("waiting", "paid"),
    "underpaid": ("waiting", "underpaid"),
    "refunded": ("waiting", "refunded"),
    "expired": ("expired",),
    "failed": ("failed",),
}


async def sql_order(
    conn: Conn,
    status: str,
    *,
    items: list[tuple[str, int]] | None = None,
    locale: str = "en",
    preorder: bool = False,
    delivery_failed: bool = False,
) -> uuid.UUID:
    """An order of `items` ((productId, qty)) with FACTS as its snapshot, moved to `status`
    through legal transitions (a covering payment before `paid`); `preorder` marks every
    line a pre-order, `delivery_failed` fails its fulfillment (status must be `paid`).
    `refunded-after-delivery`: fulfilled (without keys), then refunded."""
    await seed_products(conn)
    lines = items or [(TEXT_PRODUCT_ID, 1)]
    cur = await conn.execute(
        "INSERT INTO orders (email, currency, total_amount, locale)"
        " VALUES ('ada@example.com', 'eur', 14.99, %s) RETURNING id",
        (locale,),
    )
    row = await cur.fetchone()
    assert row is not None
    order_id: uuid.UUID = row[0]
    for product_id, qty in lines:
        facts = FACTS[product_id]
        await conn.execute(
            "INSERT INTO order_items (order_id, product_id, qty, unit_price, max_cost, name,"
            " platform, regional_limitations, excluded_countries, is_preorder, release_date)"
            " SELECT %s, product_id, %s, price, max_cost, %s, %s, %s, %s, %s, %s"
            " FROM products WHERE product_id = %s",
            (
                order_id,
                qty,
                facts["name"],
                facts["platform"],
                facts["regional_limitations"],
                facts["excluded_countries"],
                preorder,
                PREORDER_RELEASE if preorder else None,
                product_id,
            ),
        )
    delivered = status == "refunded-after-delivery"
    for step in PATHS["paid" if delivered else status]:
        if step == "paid":
            await conn.execute(COVERING_PAYMENT, (order_id,))
        await conn.execute("UPDATE orders SET status = %s WHERE id = %s", (step, order_id))
    if delivered:
        for fulfillment, order in (("processing", "paid"), ("fulfilled", "fulfilled")):
            await conn.execute(
                "UPDATE orders SET fulfillment_status = %s, status = %s WHERE id = %s",
                (fulfillment, order, order_id),
            )
        await conn.execute("UPDATE orders SET status = 'refunded' WHERE id = %s", (order_id,))
    if delivery_failed:
        assert status == "paid"
        await conn.execute(
            "UPDATE orders SET fulfillment_status = 'failed' WHERE id = %s", (order_id,)
        )
    return order_id


async def sql_fulfilled_order(
    api: Any, sim: Any, conn: Conn, items: list[tuple[str, int]], locale: str = "en"
) -> uuid.UUID:
    """An order written in SQL, paid, and fulfilled by the worker's pipeline (real keys from
    the Kinguin simulator)."""
    order_id = await sql_order(conn, "paid", items=items, locale=locale)
    async with worker_runtime(api.app, sim.url) as rt:
        await fulfill(rt, conn, order_id)
    return order_id
