"""Helpers for the admin endpoint tests: orders in each state and payments made in SQL,
tokens of every kind, and counts of what an admin action writes."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import aiohttp
import psycopg
from harness import ACCEPTED_PAYMENT

from bitloot.auth.order_tokens import mint_order_token
from bitloot.auth.tokens import mint_user_token
from bitloot.config import Settings
from bitloot.web.context import RESOURCES

Conn = psycopg.AsyncConnection[Any]

ADMIN_SUB = "admin-7"
FAILED_REASON = "Kinguin refused the order: OrderFailed"


class Tokens:
    """Authorization headers for each kind of caller."""

    def __init__(self, settings: Settings, api: Any) -> None:
        self._settings = settings
        self._api = api

    @property
    def admin(self) -> dict[str, str]:
        return self._bearer(mint_user_token(self._settings, sub=ADMIN_SUB, admin=True))

    @property
    def customer(self) -> dict[str, str]:
        token = mint_user_token(self._settings, sub="user-1", email="ada@example.com")
        return self._bearer(token)

    async def order(self, order_id: uuid.UUID) -> dict[str, str]:
        return self._bearer(await mint_order_token(self._api.app[RESOURCES].pool, order_id))

    @staticmethod
    def _bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


async def request(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    json: Any = None,
    params: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """(status, parsed JSON body); fails when the answer is not JSON."""
    async with http.request(method, url, headers=headers, json=json, params=params) as resp:
        assert "json" in resp.content_type, (resp.status, resp.content_type)
        return resp.status, await resp.json()


async def insert_order(conn: Conn, *, email: str = "ada@example.com") -> uuid.UUID:
    cur = await conn.execute(
        "INSERT INTO orders (email, currency, total_amount) VALUES (%s, 'eur', 14.99) RETURNING id",
        (email,),
    )
    row = await cur.fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


async def paid_order(conn: Conn, *, email: str = "ada@example.com") -> uuid.UUID:
    order_id = await insert_order(conn, email=email)
    await conn.execute("UPDATE orders SET status = 'waiting' WHERE id = %s", (order_id,))
    await conn.execute(ACCEPTED_PAYMENT, (order_id,))
    await conn.execute("UPDATE orders SET status = 'paid' WHERE id = %s", (order_id,))
    return order_id


async def failed_order(conn: Conn, *, kinguin_polls: int | None = None) -> uuid.UUID:
    """A paid order whose fulfillment failed; with a Kinguin order row when polls are given."""
    order_id = await paid_order(conn)
    await conn.execute(
        "UPDATE orders SET fulfillment_status = 'failed', fulfillment_error = %s WHERE id = %s",
        (FAILED_REASON, order_id),
    )
    if kinguin_polls is not None:
        await conn.execute(
            "INSERT INTO kinguin_orders (order_id, kinguin_order_id, status, polls)"
            " VALUES (%s, %s, 'processing', %s)",
            (order_id, f"KG-{order_id.hex[:8]}", kinguin_polls),
        )
    return order_id


async def fulfilled_order(conn: Conn, *, email: str = "ada@example.com") -> uuid.UUID:
    """A fulfilled order with its first delivery email already sent."""
    order_id = await paid_order(conn, email=email)
    await conn.execute(
        "UPDATE orders SET fulfillment_status = 'processing' WHERE id = %s", (order_id,)
    )
    await conn.execute(
        "UPDATE orders SET status = 'fulfilled', fulfillment_status = 'fulfilled' WHERE id = %s",
        (order_id,),
    )
    await conn.execute(
        "INSERT INTO email_outbox (order_id, kind, generation, to_address, status, attempts,"
        " sent_at) VALUES (%s, 'delivery', 1, %s, 'sent', 1, now())",
        (order_id, email),
    )
    return order_id


async def insert_payment(
    conn: Conn,
    order_id: uuid.UUID,
    payment_id: str,
    *,
    status: str = "finished",
    created_at: datetime | None = None,
    price_amount: Decimal = Decimal("14.99"),
    pay_amount: Decimal = Decimal("0.000312"),
) -> None:
    await conn.execute(
        "INSERT INTO payments (payment_id, order_id, status, price_amount, price_currency,"
        " pay_amount, pay_currency, actually_paid, created_at)"
        " VALUES (%s, %s, %s, %s, 'eur', %s, 'btc', %s, coalesce(%s, now()))",
        (payment_id, order_id, status, price_amount, pay_amount, pay_amount, created_at),
    )


async def count(conn: Conn, sql: str, *params: Any) -> int:
    cur = await conn.execute(sql, params)
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def side_effects(conn: Conn, order_id: uuid.UUID) -> dict[str, int]:
    """How many rows an admin action could have written for this order."""
    return {
        "events": await count(
            conn, "SELECT count(*) FROM order_events WHERE order_id = %s", order_id
        ),
        "audit": await count(
            conn, "SELECT count(*) FROM admin_audit_log WHERE order_id = %s", order_id
        ),
        "emails": await count(
            conn, "SELECT count(*) FROM email_outbox WHERE order_id = %s", order_id
        ),
        "jobs": await count(conn, "SELECT count(*) FROM procrastinate_jobs"),
        "revoked links": await count(
            conn,
            "SELECT count(*) FROM order_access_tokens WHERE order_id = %s"
            " AND revoked_at IS NOT NULL",
            order_id,
        ),
    }
