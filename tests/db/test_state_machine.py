"""The order and fulfillment state machines, enforced by PostgreSQL from plain SQL."""

from __future__ import annotations

import uuid
from collections import deque
from typing import Any

import psycopg
import pytest
from harness import COVERING_PAYMENT

ORDER_STATUSES = [
    "created", "waiting", "confirming", "paid", "fulfilled",
    "underpaid", "failed", "expired", "refunded",
]  # fmt: skip
LEGAL_ORDER = {
    ("created", "waiting"), ("created", "expired"), ("created", "failed"),
    ("waiting", "confirming"), ("waiting", "paid"), ("waiting", "underpaid"),
    ("waiting", "failed"), ("waiting", "expired"), ("waiting", "refunded"),
    ("confirming", "paid"), ("confirming", "underpaid"), ("confirming", "failed"),
    ("confirming", "expired"), ("confirming", "refunded"),
    ("paid", "fulfilled"), ("paid", "refunded"),
    ("underpaid", "paid"), ("underpaid", "refunded"), ("fulfilled", "refunded"),
}  # fmt: skip
FULFILLMENT_STATUSES = ["pending", "processing", "fulfilled", "failed"]
LEGAL_FULFILLMENT = {
    ("pending", "processing"), ("pending", "failed"),
    ("processing", "fulfilled"), ("processing", "failed"), ("failed", "pending"),
}  # fmt: skip

Conn = psycopg.AsyncConnection[Any]


def _path(legal: set[tuple[str, str]], start: str, goal: str) -> list[str]:
    """The shortest legal walk from start to goal (excluding start)."""
    prev: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            walk = []
            while node != start:
                walk.append(node)
                node = prev[node]
            return walk[::-1]
        for a, b in legal:
            if a == node and b not in prev and b != start:
                prev[b] = node
                queue.append(b)
    raise AssertionError(f"{goal} unreachable from {start}")


async def _new_order(conn: Conn) -> uuid.UUID:
    cur = await conn.execute(
        "INSERT INTO orders (email, currency, total_amount) VALUES ('a@example.com', 'eur', 10)"
        " RETURNING id"
    )
    row = await cur.fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


async def _set_status(conn: Conn, order_id: uuid.UUID, status: str) -> None:
    if status == "fulfilled":  # an order is fulfilled together with its fulfillment
        await conn.execute(
            "UPDATE orders SET fulfillment_status = 'processing' WHERE id = %s", (order_id,)
        )
        await conn.execute(
            "UPDATE orders SET status = 'fulfilled', fulfillment_status = 'fulfilled'"
            " WHERE id = %s",
            (order_id,),
        )
    else:
        if status == "paid":
            await conn.execute(COVERING_PAYMENT, (order_id,))
        await conn.execute("UPDATE orders SET status = %s WHERE id = %s", (status, order_id))


async def _order_at(conn: Conn, status: str) -> uuid.UUID:
    order_id = await _new_order(conn)
    if status != "created":
        for step in _path(LEGAL_ORDER, "created", status):
            await _set_status(conn, order_id, step)
    return order_id


async def _events(conn: Conn, order_id: uuid.UUID) -> list[tuple[str, str | None, str]]:
    cur = await conn.execute(
        "SELECT machine, from_status, to_status FROM order_events WHERE order_id = %s ORDER BY id",
        (order_id,),
    )
    return await cur.fetchall()


def test_transition_tables_match_the_spec() -> None:
    # Every status is reachable from created, so every pair below can really be attempted.
    for status in ORDER_STATUSES[1:]:
        assert _path(LEGAL_ORDER, "created", status)


async def test_database_transition_table_is_the_spec(conn: Conn) -> None:
    cur = await conn.execute("SELECT from_status, to_status FROM order_status_transitions")
    assert set(await cur.fetchall()) == LEGAL_ORDER
    cur = await conn.execute("SELECT from_status, to_status FROM fulfillment_status_transitions")
    assert set(await cur.fetchall()) == LEGAL_FULFILLMENT


async def test_new_order_starts_created_and_logs_one_event(conn: Conn) -> None:
    order_id = await _new_order(conn)
    assert await _events(conn, order_id) == [("order", None, "created")]


async def test_new_order_cannot_start_paid(conn: Conn) -> None:
    with pytest.raises(psycopg.Error) as info:
        await conn.execute(
            "INSERT INTO orders (email, currency, total_amount, status)"
            " VALUES ('a@example.com', 'eur', 10, 'paid')"
        )
    assert info.value.sqlstate == "BL001"


@pytest.mark.parametrize("source", ORDER_STATUSES)
async def test_every_order_transition_from(conn: Conn, source: str) -> None:
    for target in ORDER_STATUSES:
        if target == source:
            continue
        order_id = await _order_at(conn, source)
        before = len(await _events(conn, order_id))
        if (source, target) in LEGAL_ORDER:
            await _set_status(conn, order_id, target)
            cur = await conn.execute("SELECT status FROM orders WHERE id = %s", (order_id,))
            assert await cur.fetchone() == (target,)
            new_events = (await _events(conn, order_id))[before:]
            assert [e for e in new_events if e[0] == "order"] == [("order", source, target)]
        else:
            with pytest.raises(psycopg.Error) as info:
                await conn.execute(
                    "UPDATE orders SET status = %s WHERE id = %s", (target, order_id)
                )
            assert info.value.sqlstate == "BL001", (source, target)
            assert f"{source} -> {target}" in str(info.value)
            assert len(await _events(conn, order_id)) == before


@pytest.mark.parametrize("source", FULFILLMENT_STATUSES)
async def test_every_fulfillment_transition_from(conn: Conn, source: str) -> None:
    for target in FULFILLMENT_STATUSES:
        if target == source:
            continue
        order_id = await _order_at(conn, "paid")
        for step in _path(LEGAL_FULFILLMENT, "pending", source) if source != "pending" else []:
            await conn.execute(
                "UPDATE orders SET fulfillment_status = %s WHERE id = %s", (step, order_id)
            )
        before = len(await _events(conn, order_id))
        update = "UPDATE orders SET fulfillment_status = %s WHERE id = %s"
        if (source, target) in LEGAL_FULFILLMENT:
            await conn.execute(update, (target, order_id))
            events = await _events(conn, order_id)
            assert events[before:] == [("fulfillment", source, target)]
        else:
            with pytest.raises(psycopg.Error) as info:
                await conn.execute(update, (target, order_id))
            assert info.value.sqlstate == "BL001", (source, target)
            assert len(await _events(conn, order_id)) == before


async def test_fulfillment_cannot_start_before_payment(conn: Conn) -> None:
    order_id = await _order_at(conn, "waiting")
    with pytest.raises(psycopg.errors.CheckViolation):
        await conn.execute(
            "UPDATE orders SET fulfillment_status = 'processing' WHERE id = %s", (order_id,)
        )


async def test_order_cannot_be_fulfilled_without_its_fulfillment(conn: Conn) -> None:
    order_id = await _order_at(conn, "paid")
    with pytest.raises(psycopg.errors.CheckViolation):
        await conn.execute("UPDATE orders SET status = 'fulfilled' WHERE id = %s", (order_id,))


async def test_unchanged_status_writes_no_event(conn: Conn) -> None:
    order_id = await _order_at(conn, "waiting")
    before = await _events(conn, order_id)
    await conn.execute("UPDATE orders SET status_reason = 'noted' WHERE id = %s", (order_id,))
    assert await _events(conn, order_id) == before


async def test_actor_and_reason_are_recorded(conn: Conn) -> None:
    order_id = await _new_order(conn)
    async with conn.transaction():
        await conn.execute(
            "SELECT set_config('bitloot.actor', 'worker:7', true),"
            " set_config('bitloot.reason', 'invoice created', true)"
        )
        await conn.execute("UPDATE orders SET status = 'waiting' WHERE id = %s", (order_id,))
    await conn.execute("UPDATE orders SET status = 'expired' WHERE id = %s", (order_id,))
    cur = await conn.execute(
        "SELECT actor, reason FROM order_events WHERE order_id = %s ORDER BY id", (order_id,)
    )
    rows = await cur.fetchall()
    assert rows[1] == ("worker:7", "invoice created")
    assert rows[2][0].startswith("sql:")  # a plain UPDATE outside the application
    assert rows[2][1] is None


APPEND_ONLY = {
    "order_events": "SELECT id FROM order_events LIMIT 1",
    "key_access_events": None,
    "admin_audit_log": None,
}


async def _seed_append_only_rows(conn: Conn) -> uuid.UUID:
    order_id = await _new_order(conn)
    await conn.execute(
        "INSERT INTO key_access_events (order_id, key_id, actor_kind) VALUES (%s, 'k1', 'user')",
        (order_id,),
    )
    await conn.execute(
        "INSERT INTO admin_audit_log (admin_id, action, order_id) VALUES ('adm', 'test', %s)",
        (order_id,),
    )
    return order_id


@pytest.mark.parametrize("table", sorted(APPEND_ONLY))
@pytest.mark.parametrize(
    "statement",
    ["UPDATE {t} SET id = id", "DELETE FROM {t}", "TRUNCATE {t} CASCADE"],
)
async def test_append_only_tables_refuse_changes(conn: Conn, table: str, statement: str) -> None:
    await _seed_append_only_rows(conn)
    with pytest.raises(psycopg.Error) as info:
        await conn.execute(statement.format(t=table))  # type: ignore[arg-type]
    assert info.value.sqlstate in ("BL002", "428C9"), str(info.value)
    cur = await conn.execute(f"SELECT count(*) FROM {table}")  # type: ignore[arg-type]
    row = await cur.fetchone()
    assert row is not None and row[0] >= 1


async def test_orders_cannot_be_deleted(conn: Conn) -> None:
    order_id = await _new_order(conn)
    with pytest.raises(psycopg.Error) as info:
        await conn.execute("DELETE FROM orders WHERE id = %s", (order_id,))
    assert info.value.sqlstate == "BL002"
