"""Helpers shared by the tests (import as `from harness import ...`; conftest files are not
modules one can import reliably once there are several of them)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from aiohttp import web

from bitloot.processes import free_port

TEST_JWT_SECRET = "test-jwt-secret-long-enough-for-hs256-0123456789"

# The evidence the orders trigger asks for before `paid` (migration 0012): a finished
# payment of the order covering its total in its currency, as an IPN would have stored it.
# For fixtures that make an order paid in SQL, without the payment flow; one parameter,
# the order id, run just before the UPDATE to `paid`.
COVERING_PAYMENT = (
    "INSERT INTO payments (payment_id, order_id, status, price_amount, price_currency,"
    " pay_amount, pay_currency, actually_paid)"
    " SELECT 'evidence-' || id, id, 'finished', total_amount, currency, 1, 'btc', 1"
    " FROM orders WHERE id = %s ON CONFLICT (payment_id) DO NOTHING"
)
# The other evidence: an admin's acceptance (payment_acceptances), for fixtures whose tests
# count or list the payments themselves.
ACCEPTED_PAYMENT = (
    "INSERT INTO payment_acceptances (order_id, admin_id, reason)"
    " VALUES (%s, 'test-admin', 'test fixture: paid without the payment flow')"
)


@dataclass
class Served:
    """An aiohttp app served on 127.0.0.1."""

    app: web.Application
    url: str
    runner: web.AppRunner


async def bare_order(
    conn: psycopg.AsyncConnection[Any], email: str = "ada@example.com"
) -> uuid.UUID:
    """An order row and nothing else (`created`, no items, no invoice): something for an
    order access token to open."""
    cur = await conn.execute(
        "INSERT INTO orders (email, currency, total_amount) VALUES (%s, 'eur', 9.99) RETURNING id",
        (email,),
    )
    row = await cur.fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


async def serve_app(app: web.Application, port: int | None = None) -> Served:
    """Serve `app` on a loopback port (a free one unless given)."""
    port = port or free_port()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return Served(app=app, url=f"http://127.0.0.1:{port}", runner=runner)
