"""Issue 14, item 3: every order_events row a payment report writes carries the real cause
(the shortfall, the currency mismatch), not only which report arrived."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from ipn_support import PRICE, PRODUCT_ID, ipn_for, scalar, seed_product, signed

from bitloot.db.connect import set_actor
from bitloot.nowpayments.models import Ipn
from bitloot.nowpayments.signature import RawNumber, parse_ipn_json
from bitloot.payments.service import apply_ipn

Conn = psycopg.AsyncConnection[Any]


async def waiting_order(conn: Conn) -> uuid.UUID:
    await seed_product(conn)
    order_id: uuid.UUID = await scalar(
        conn,
        "INSERT INTO orders (email, currency, total_amount) VALUES ('ada@example.com', 'eur', %s)"
        " RETURNING id",
        PRICE,
    )
    await conn.execute(
        "INSERT INTO order_items (order_id, product_id, qty, unit_price, max_cost, name)"
        " VALUES (%s, %s, 1, %s, 12, 'A game')",
        (order_id, PRODUCT_ID, PRICE),
    )
    await conn.execute("UPDATE orders SET status = 'waiting' WHERE id = %s", (order_id,))
    return order_id


async def apply(conn: Conn, order_id: uuid.UUID, **fields: Any) -> None:
    """As POST /webhooks/nowpayments does: actor and event named, then the report applied."""
    raw, _ = signed(ipn_for(order_id, **fields))
    ipn = Ipn.from_parsed(parse_ipn_json(raw))
    async with conn.transaction():
        await set_actor(conn, "nowpayments", f"IPN {ipn.payment_status} for {ipn.payment_id}")
        await apply_ipn(
            conn,
            ipn,
            raw_body=raw.decode(),
            signature_variant="utf8-lists",
        )


async def last_event(conn: Conn, order_id: uuid.UUID) -> tuple[str, str, str, str]:
    cur = await conn.execute(
        "SELECT e.to_status, e.actor, e.reason, o.status_reason FROM order_events e"
        " JOIN orders o ON o.id = e.order_id WHERE e.order_id = %s ORDER BY e.id DESC LIMIT 1",
        (order_id,),
    )
    row = await cur.fetchone()
    assert row is not None
    return row[0], row[1], row[2], row[3]


@pytest.mark.parametrize(
    ("fields", "status", "reason"),
    [
        # half the crypto arrived: the shortfall
        (
            {"pay_amount": RawNumber("0.0003"), "actually_paid": RawNumber("0.0001")},
            "underpaid",
            "paid 5.00 of 14.99 eur",
        ),
        # priced in another currency: the mismatch
        ({"price_currency": "usd"}, "failed", "paid in usd, order is in eur"),
        # a final status without the amounts behind it: what is missing
        (
            {"actually_paid": None},
            "underpaid",
            "payment 5077129999 finished proves no amount (no actually_paid)",
        ),
        ({"payment_status": "expired"}, "expired", "payment 5077129999 expired"),
        ({}, "paid", "payment 5077129999 finished"),
    ],
)
async def test_the_event_carries_the_cause(
    conn: Conn, fields: dict[str, Any], status: str, reason: str
) -> None:
    order_id = await waiting_order(conn)
    await apply(conn, order_id, **fields)
    assert await last_event(conn, order_id) == (status, "nowpayments", reason, reason)
