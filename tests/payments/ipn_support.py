"""Helpers shared by the IPN tests: a priced order through `POST /orders`, the simulator's
control API, signed IPN bodies, and what the database holds afterwards."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import aiohttp
import psycopg

from bitloot.nowpayments.signature import RawNumber, dump_json, sign_ipn
from bitloot.sim.app import SimConfig

PRODUCT_ID = "5c9b5f6b2539a4e8f172916a"
PRICE = Decimal("14.99")
IPN_SECRET = SimConfig().nowpayments_ipn_secret
# The simulator's fake rate (units of BTC per EUR), so tests can pay exact fiat amounts.
BTC_PER_EUR = Decimal("0.000016")

Conn = psycopg.AsyncConnection[Any]


async def seed_product(conn: Conn, *, product_id: str = PRODUCT_ID, price: Decimal = PRICE) -> None:
    await conn.execute(
        "INSERT INTO products (product_id, name, price, currency, max_cost)"
        " VALUES (%s, 'Game', %s, 'eur', 12) ON CONFLICT DO NOTHING",
        (product_id, price),
    )


async def create_order(http: aiohttp.ClientSession, api_url: str, conn: Conn) -> uuid.UUID:
    """A one-key order made through the API (seeding its product first); in `waiting`."""
    await seed_product(conn)
    body = {"email": "ada@example.com", "items": [{"productId": PRODUCT_ID, "qty": 1}]}
    async with http.post(f"{api_url}/orders", json=body) as resp:
        data = await resp.json()
    assert resp.status == 201, data
    assert data["status"] == "waiting"
    return uuid.UUID(data["id"])


async def invoice_id(conn: Conn, order_id: uuid.UUID) -> str:
    cur = await conn.execute("SELECT invoice_id FROM orders WHERE id = %s", (order_id,))
    row = await cur.fetchone()
    assert row is not None and row[0] is not None
    return str(row[0])


async def pay(
    http: aiohttp.ClientSession,
    sim_url: str,
    invoice: str,
    *,
    expect_all_ok: bool = True,
    **body: Any,
) -> dict[str, Any]:
    """Drive a payment of `invoice` through the simulator and wait for every IPN."""
    body.setdefault("wait", True)
    body.setdefault("interval_ms", 0)
    body.setdefault("retry_delays_ms", [])  # one attempt each: a refused IPN shows as such
    url = f"{sim_url}/nowpayments/sim/invoices/{invoice}/pay"
    async with http.post(url, json=body) as resp:
        data: dict[str, Any] = await resp.json()
    assert resp.status == 201, data
    assert data["done"], data
    if expect_all_ok:
        codes = [d["response_code"] for d in data["deliveries"]]
        assert codes and all(code == 200 for code in codes), codes
    return data


async def sim_ipns(http: aiohttp.ClientSession, sim_url: str) -> list[dict[str, Any]]:
    async with http.get(f"{sim_url}/nowpayments/sim/ipns") as resp:
        data = await resp.json()
    assert resp.status == 200, data
    return list(data["items"])


def ipn_for(order_id: uuid.UUID | str, **fields: Any) -> dict[str, Any]:
    """A payment IPN body for `order_id` as the simulator would write it: a full payment
    of `PRICE` in BTC, `finished`, unless `fields` say otherwise."""
    pay_amount = PRICE * BTC_PER_EUR
    body: dict[str, Any] = {
        "payment_id": RawNumber("5077129999"),
        "parent_payment_id": None,
        "invoice_id": RawNumber("4522625844"),
        "payment_status": "finished",
        "pay_address": "bc1qexampleexampleexample",
        "payin_extra_id": None,
        "price_amount": RawNumber(str(PRICE)),
        "price_currency": "eur",
        "pay_amount": RawNumber(str(pay_amount)),
        "actually_paid": RawNumber(str(pay_amount)),
        "actually_paid_at_fiat": RawNumber(str(PRICE)),
        "pay_currency": "btc",
        "order_id": str(order_id),
        "order_description": f"BitLoot order {order_id}",
        "purchase_id": "6084749999",
        "outcome_amount": RawNumber("0.00023864"),
        "outcome_currency": "btc",
        "payment_extra_ids": None,
        "updated_at": RawNumber("1767225600000"),
    }
    body.update(fields)
    return body


def signed(body: dict[str, Any], secret: str = IPN_SECRET) -> tuple[bytes, str]:
    """The wire bytes of `body` and their `x-nowpayments-sig`, as NOWPayments signs."""
    raw = dump_json(body).encode("utf-8")
    return raw, sign_ipn(raw, secret)


async def post_ipn(
    http: aiohttp.ClientSession, api_url: str, raw: bytes, signature: str | None
) -> tuple[int, str, Any]:
    """POST raw bytes to the IPN endpoint: (status, content type, parsed body)."""
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["x-nowpayments-sig"] = signature
    async with http.post(f"{api_url}/webhooks/nowpayments", data=raw, headers=headers) as resp:
        return resp.status, resp.content_type, await resp.json(content_type=None)


async def scalar(conn: Conn, sql: str, *params: Any) -> Any:
    cur = await conn.execute(sql, params)
    row = await cur.fetchone()
    assert row is not None
    return row[0]


async def order_status(conn: Conn, order_id: uuid.UUID) -> str:
    return str(await scalar(conn, "SELECT status FROM orders WHERE id = %s", order_id))


async def fulfillment_jobs(conn: Conn, order_id: uuid.UUID | None = None) -> int:
    """Queued `fulfill_order` jobs (all of them, or those of one order)."""
    sql = "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'fulfill_order'"
    if order_id is None:
        return int(await scalar(conn, sql))
    return int(await scalar(conn, sql + " AND args->>'order_id' = %s", str(order_id)))


async def order_trail(conn: Conn, order_id: uuid.UUID) -> list[str]:
    cur = await conn.execute(
        "SELECT to_status FROM order_events WHERE order_id = %s AND machine = 'order' ORDER BY id",
        (order_id,),
    )
    return [row[0] for row in await cur.fetchall()]


async def snapshot(conn: Conn) -> dict[str, Any]:
    """Everything an IPN could leave behind, to compare before and after a refusal."""
    tables = ["orders", "order_items", "payments", "order_events", "webhook_events"]
    state: dict[str, Any] = {t: await scalar(conn, f"SELECT count(*) FROM {t}") for t in tables}
    state["jobs"] = await scalar(conn, "SELECT count(*) FROM procrastinate_jobs")
    cur = await conn.execute(
        "SELECT id, status, status_reason, updated_at, paid_at FROM orders ORDER BY id"
    )
    state["order_rows"] = await cur.fetchall()
    return state
