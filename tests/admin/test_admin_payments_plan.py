"""The payment pages walk an index from the cursor down, on the first page and deep in the
list, with the parameters bound (custom plan) and without them (the generic plan a
prepared statement ends up with). 20,000 payments are generated in SQL."""

from __future__ import annotations

import re
from typing import Any

import pytest
from admin_support import Conn

from bitloot.admin.models import PaymentListQuery
from bitloot.admin.repository import payments_page_query
from bitloot.web.cursor import Position, encode_cursor

PAYMENTS = 20_000
ORDERS = 2_000


@pytest.fixture
async def many_payments(conn: Conn) -> Conn:
    await conn.execute(
        "INSERT INTO orders (email, currency, total_amount)"
        " SELECT 'buyer' || g || '@example.com', 'eur', 9.99 FROM generate_series(1, %s) g",
        (ORDERS,),
    )
    await conn.execute(
        """
        INSERT INTO payments (payment_id, order_id, status, price_amount, price_currency,
                              created_at)
        SELECT (5000000000 + g)::text, o.id,
               (ARRAY['waiting', 'confirming', 'confirmed', 'sending', 'partially_paid',
                      'finished', 'failed', 'refunded', 'expired'])[1 + g %% 9],
               9.99, 'eur', timestamptz '2025-01-01' + g * interval '37 seconds'
          FROM generate_series(1, %s) g
          JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM orders) o
            ON o.n = g %% %s
        """,
        (PAYMENTS, ORDERS),
    )
    await conn.execute("ANALYZE orders")
    await conn.execute("ANALYZE payments")
    return conn


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(n for child in plan.get("Plans", []) for n in _nodes(child))]


def _generic(sql: str) -> str:
    """`sql` with each named placeholder as `$n`, for EXPLAIN (GENERIC_PLAN)."""
    numbers: dict[str, int] = {}
    return re.sub(r"%\((\w+)\)s", lambda m: f"${numbers.setdefault(m[1], len(numbers) + 1)}", sql)


async def _plans(conn: Conn, params: dict[str, str]) -> list[list[dict[str, Any]]]:
    sql, values = payments_page_query(PaymentListQuery.model_validate(params))
    custom = await (await conn.execute(f"EXPLAIN (FORMAT JSON) {sql}", values)).fetchone()
    explain_generic = f"EXPLAIN (GENERIC_PLAN, FORMAT JSON) {_generic(sql)}"
    generic = await (await conn.execute(explain_generic)).fetchone()
    assert custom is not None and generic is not None
    return [_nodes(custom[0][0]["Plan"]), _nodes(generic[0][0]["Plan"])]


async def _deep_cursor(conn: Conn, offset: int, status: str | None = None) -> str:
    cur = await conn.execute(
        "SELECT created_at, payment_id FROM payments WHERE %(status)s::text IS NULL"
        " OR status = %(status)s ORDER BY created_at DESC, payment_id DESC OFFSET %(offset)s"
        " LIMIT 1",
        {"status": status, "offset": offset},
    )
    row = await cur.fetchone()
    assert row is not None
    return encode_cursor(Position(row[0], row[1]))


async def test_payment_pages_use_an_index_at_any_depth(many_payments: Conn) -> None:
    conn = many_payments
    cases = [
        ({}, "payments_created_idx"),
        ({"cursor": await _deep_cursor(conn, 15_000)}, "payments_created_idx"),
        ({"to": "2025-06-01T00:00:00Z", "from": "2025-01-02T00:00:00Z"}, "payments_created_idx"),
        ({"status": "finished"}, "payments_status_created_idx"),
        (
            {"status": "finished", "cursor": await _deep_cursor(conn, 1_800, "finished")},
            "payments_status_created_idx",
        ),
        ({"email": "Buyer17@example.com"}, "payments_order_idx"),
    ]
    for params, index in cases:
        for nodes in await _plans(conn, {"limit": "50", **params}):
            scans = [n for n in nodes if n.get("Relation Name") == "payments"]
            assert scans, (params, nodes)
            assert all(n["Node Type"] != "Seq Scan" for n in scans), (params, scans)
            assert {n.get("Index Name") for n in scans} == {index}, (params, scans)
