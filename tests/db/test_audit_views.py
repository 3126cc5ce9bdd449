"""The everyday audit views (sql/migrations/0010_audit_views.sql) answer right on a small
set of orders in different states, built in plain SQL the way the application leaves them.

    A  paid 10 minutes ago, Kinguin still processing, a poll job queued      stuck
    B  paid 2 minutes ago                                                      not yet stuck
    C  paid 2 hours ago, fulfillment failed (its job failed too)               stuck, attention
    D  paid 3 hours ago, nothing queued                                        stuck, attention
    E  fulfilled (paid 2024-03-01, EUR), keys opened twice, a re-deposit, a failed email
    F  underpaid, with its flagged IPN                                         attention
    G  fulfilled (paid 2024-03-01, USD)
    H  paid 2024-03-01 (EUR), refunded today; Kinguin refunded its order too
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from harness import COVERING_PAYMENT

Orders = dict[str, uuid.UUID]


def _order(conn: psycopg.Connection[Any], currency: str = "eur", total: str = "20.00") -> uuid.UUID:
    order_id = uuid.uuid4()
    conn.execute(
        "INSERT INTO orders (id, email, currency, total_amount) VALUES (%s, %s, %s, %s)",
        (order_id, f"{order_id.hex[:6]}@example.com", currency, Decimal(total)),
    )
    conn.execute("UPDATE orders SET status = 'waiting' WHERE id = %s", (order_id,))
    return order_id


def _paid(conn: psycopg.Connection[Any], paid_at: str, **order: str) -> uuid.UUID:
    order_id = _order(conn, **order)
    conn.execute(COVERING_PAYMENT, (order_id,))
    conn.execute(
        "UPDATE orders SET status = 'paid', paid_at = " + paid_at + " WHERE id = %s", (order_id,)
    )
    return order_id


def _fulfilled(conn: psycopg.Connection[Any], paid_at: str, **order: str) -> uuid.UUID:
    order_id = _paid(conn, paid_at, **order)
    conn.execute("UPDATE orders SET fulfillment_status = 'processing' WHERE id = %s", (order_id,))
    conn.execute(
        "UPDATE orders SET status = 'fulfilled', fulfillment_status = 'fulfilled' WHERE id = %s",
        (order_id,),
    )
    return order_id


def _kinguin(
    conn: psycopg.Connection[Any], order_id: uuid.UUID, status: str, price: str, polls: int = 0
) -> None:
    conn.execute(
        "INSERT INTO kinguin_orders (order_id, kinguin_order_id, status, payment_price, polls)"
        " VALUES (%s, %s, %s, %s, %s)",
        (order_id, f"KG-{order_id.hex[:8]}", status, Decimal(price), polls),
    )


def _job(
    conn: psycopg.Connection[Any],
    task: str,
    args: str,
    *,
    lock: str | None = None,
    end: str | None = None,
    scheduled_in: str | None = None,
) -> int:
    """A procrastinate job, taken through todo -> doing -> `end` so its events are real."""
    row = conn.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, args, scheduled_at)"
        " VALUES ('q', %s, %s, %s::jsonb, now() + %s::interval) RETURNING id",
        (task, lock, args, scheduled_in),
    ).fetchone()
    assert row is not None
    if end is not None:
        conn.execute("UPDATE procrastinate_jobs SET status = 'doing' WHERE id = %s", (row[0],))
        conn.execute(
            "UPDATE procrastinate_jobs SET status = %s, attempts = 3 WHERE id = %s",
            (end, row[0]),
        )
    return int(row[0])


@pytest.fixture
def orders(db_url: str) -> Orders:
    with psycopg.connect(db_url, autocommit=True) as conn:
        o: Orders = {}
        o["A"] = _paid(conn, "now() - interval '10 minutes'")
        conn.execute("UPDATE orders SET fulfillment_status = 'processing' WHERE id = %s", (o["A"],))
        _kinguin(conn, o["A"], "processing", "12.00", polls=3)
        _job(conn, "fulfill_order", f'{{"order_id": "{o["A"]}"}}', lock=f"order:{o['A']}",
             scheduled_in="1 minute")  # fmt: skip

        o["B"] = _paid(conn, "now() - interval '2 minutes'")

        o["C"] = _paid(conn, "now() - interval '2 hours'")
        conn.execute(
            "UPDATE orders SET fulfillment_status = 'failed', fulfillment_error = 'out of stock'"
            " WHERE id = %s",
            (o["C"],),
        )
        _job(conn, "fulfill_order", f'{{"order_id": "{o["C"]}"}}', lock=f"order:{o['C']}",
             end="failed")  # fmt: skip

        o["D"] = _paid(conn, "now() - interval '3 hours'")

        o["E"] = _fulfilled(conn, "'2024-03-01 10:00+00'")
        _kinguin(conn, o["E"], "completed", "12.50")
        for kind, actor, ip, agent in [
            ("order_token", str(o["E"]), "203.0.113.5", "Firefox"),
            ("admin", "admin-1", "198.51.100.7", "curl/8"),
        ]:
            conn.execute(
                "INSERT INTO key_access_events (order_id, key_id, actor_kind, actor_id,"
                " client_ip, user_agent) VALUES (%s, 'k-1', %s, %s, %s, %s)",
                (o["E"], kind, actor, ip, agent),
            )
        conn.execute(
            "INSERT INTO payments (payment_id, order_id, parent_payment_id, status, actually_paid,"
            " pay_currency) VALUES ('5001', %s, NULL, 'finished', 0.001, 'btc'),"
            " ('5002', %s, '5001', 'finished', 0.0001, 'btc')",
            (o["E"], o["E"]),
        )
        [(outbox_id,)] = conn.execute(
            "INSERT INTO email_outbox (order_id, kind, to_address, status, attempts, last_error)"
            " VALUES (%s, 'delivery', 'e@example.com', 'failed', 9, '550 mailbox unavailable')"
            " RETURNING id",
            (o["E"],),
        ).fetchall()
        _job(conn, "send_delivery_email", f'{{"outbox_id": {outbox_id}}}', end="failed")
        _job(conn, "send_delivery_email", f'{{"outbox_id": {outbox_id}}}', end="succeeded")
        _job(conn, "reconcile", '{"timestamp": 1}', end="failed")

        o["F"] = _order(conn)
        conn.execute(
            "UPDATE orders SET status = 'underpaid', status_reason = 'underpaid by 0.50'"
            " WHERE id = %s",
            (o["F"],),
        )
        conn.execute(
            "INSERT INTO webhook_events (provider, dedup_key, event_type, external_id, order_id,"
            " raw_body, processed_at, outcome, needs_attention)"
            " VALUES ('nowpayments', 'f', 'finished', '6001', %s, '{}', now(),"
            " 'order_underpaid', true)",
            (o["F"],),
        )

        o["G"] = _fulfilled(conn, "'2024-03-01 11:00+00'", currency="usd", total="30.00")
        _kinguin(conn, o["G"], "completed", "18.00")

        o["H"] = _paid(conn, "'2024-03-01 12:00+00'", total="15.00")
        _kinguin(conn, o["H"], "refunded", "9.00")
        conn.execute("UPDATE orders SET status = 'refunded' WHERE id = %s", (o["H"],))
    return o


def query(db_url: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(statement, params).fetchall()


def test_key_access_log_lists_every_link_issued(db_url: str, orders: Orders) -> None:
    rows = query(
        db_url,
        "SELECT order_id, key_id, actor_kind, actor_id, host(client_ip), user_agent,"
        " admin_override, at IS NOT NULL FROM key_access_log ORDER BY access_id",
    )
    e = orders["E"]
    assert rows == [
        (e, "k-1", "order_token", str(e), "203.0.113.5", "Firefox", False, True),
        (e, "k-1", "admin", "admin-1", "198.51.100.7", "curl/8", True, True),
    ]


def test_stuck_orders_are_paid_over_five_minutes_with_why_and_next_job(
    db_url: str, orders: Orders
) -> None:
    rows = query(
        db_url,
        "SELECT order_id, fulfillment_status, reason, kinguin_status, kinguin_polls,"
        " next_job_status, next_job_at > now(), paid_for > interval '5 minutes'"
        " FROM stuck_orders ORDER BY paid_at",
    )
    assert rows == [
        (orders["D"], "pending", "no fulfillment job queued (the reconciler queues one)",
         None, None, None, None, True),
        (orders["C"], "failed", "fulfillment failed: out of stock", None, None, None, None, True),
        (orders["A"], "processing", "waiting for Kinguin's keys (3 polls so far)",
         "processing", 3, "todo", True, True),
    ]  # fmt: skip


def test_failed_jobs_name_their_order_and_error(db_url: str, orders: Orders) -> None:
    rows = query(
        db_url,
        "SELECT task_name, order_id, outbox_id IS NOT NULL, error, attempts, failed_at IS NOT NULL"
        " FROM failed_jobs ORDER BY job_id",
    )
    assert rows == [
        ("fulfill_order", orders["C"], False, "out of stock", 3, True),
        ("send_delivery_email", orders["E"], True, "550 mailbox unavailable", 3, True),
        ("reconcile", None, False, None, 3, True),
    ]


def test_daily_sales_per_day_and_currency(db_url: str, orders: Orders) -> None:
    rows = query(
        db_url,
        "SELECT currency, orders_paid, revenue, kinguin_cost_eur, margin_eur, refunds,"
        " refunded_amount FROM daily_sales WHERE day = '2024-03-01' ORDER BY currency",
    )
    assert rows == [
        # E and H paid; H refunded since (out of revenue); Kinguin refunded H's order.
        ("eur", 2, Decimal("20.00"), Decimal("12.5000"), Decimal("7.5000"), 0, Decimal(0)),
        # No margin for a currency the view does not convert.
        ("usd", 1, Decimal("30.00"), Decimal("18.0000"), None, 0, Decimal(0)),
    ]
    [(refund_day,)] = query(
        db_url,
        "SELECT (at AT TIME ZONE 'UTC')::date FROM order_events"
        " WHERE order_id = %s AND to_status = 'refunded'",
        orders["H"],
    )
    assert isinstance(refund_day, date)
    [refunds] = query(
        db_url,
        "SELECT refunds, refunded_amount FROM daily_sales WHERE day = %s AND currency = 'eur'",
        refund_day,
    )
    assert refunds == (1, Decimal("15.00"))


def test_needs_attention_lists_what_a_human_must_look_at(db_url: str, orders: Orders) -> None:
    rows = query(db_url, "SELECT kind, order_id, reference, status, why FROM needs_attention")
    found = {(kind, order_id): (reference, status, why) for kind, order_id, reference, status, why
             in rows}  # fmt: skip
    assert set(found) == {
        ("webhook", orders["F"]),
        ("order", orders["F"]),
        ("order", orders["C"]),
        ("order", orders["D"]),
        ("payment", orders["E"]),
        ("email", orders["E"]),
    }
    assert found["webhook", orders["F"]][1:] == (
        "nowpayments finished",
        "order_underpaid: Moved the order to underpaid: less than its total arrived, or the"
        " report did not prove the amount. Flagged.",
    )
    assert found["order", orders["F"]][2].startswith("underpaid: underpaid by 0.50")
    assert found["order", orders["C"]][2].startswith("fulfillment failed: out of stock")
    assert found["order", orders["D"]][2].startswith("paid 03:00:00 ago and not fulfilled: ")
    assert found["payment", orders["E"]][:2] == ("5002", "finished")
    assert "re-deposit to payment 5001 (0.0001 btc)" in found["payment", orders["E"]][2]
    assert "550 mailbox unavailable" in found["email", orders["E"]][2]
    # A (paid 10 minutes ago) is stuck, but not yet a human's business; B, E, G, H are fine.
    assert orders["A"] not in {order_id for _, order_id in found}
