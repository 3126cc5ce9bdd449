"""The money guards of migration 0012, tried from a DBA's seat: plain SQL on a real
PostgreSQL, as one would type it into psql (issue 14, item 1)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest

Conn = psycopg.AsyncConnection[Any]

NO_EVIDENCE = "BL003"
ORDER_FROZEN = "BL004"
FORWARD_ONLY = "BL005"
APPEND_ONLY = "BL002"


async def scalar(conn: Conn, sql: str, *params: Any) -> Any:
    cur = await conn.execute(sql, params)
    row = await cur.fetchone()
    assert row is not None
    return row[0]


async def refused(conn: Conn, sql: str, *params: Any) -> psycopg.Error:
    """The error `sql` raises (it must raise)."""
    with pytest.raises(psycopg.Error) as info:
        await conn.execute(sql, params)
    return info.value


async def waiting_order(conn: Conn, total: str = "20.00", currency: str = "eur") -> uuid.UUID:
    order_id: uuid.UUID = await scalar(
        conn,
        "INSERT INTO orders (email, currency, total_amount) VALUES ('ada@example.com', %s, %s)"
        " RETURNING id",
        currency,
        Decimal(total),
    )
    await conn.execute("UPDATE orders SET status = 'waiting' WHERE id = %s", (order_id,))
    return order_id


async def payment(
    conn: Conn,
    order_id: uuid.UUID,
    payment_id: str = "5001",
    *,
    status: str = "finished",
    price: str | None = "20.00",
    currency: str | None = "eur",
    pay: str | None = "0.0004",
    sent: str | None = "0.0004",
    parent: str | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO payments (payment_id, order_id, parent_payment_id, status, price_amount,"
        " price_currency, pay_amount, pay_currency, actually_paid)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, 'btc', %s)",
        (payment_id, order_id, parent, status, price, currency, pay, sent),
    )


async def status(conn: Conn, order_id: uuid.UUID) -> str:
    return str(await scalar(conn, "SELECT status FROM orders WHERE id = %s", order_id))


PAY = "UPDATE orders SET status = 'paid' WHERE id = %s"


# --- `paid` needs evidence ----------------------------------------------------------------


async def test_the_bare_update_to_paid_without_a_payment_is_refused(conn: Conn) -> None:
    """The issue's attack: one UPDATE on a waiting order with no payment row."""
    order_id = await waiting_order(conn)
    error = await refused(conn, PAY, order_id)
    assert error.sqlstate == NO_EVIDENCE
    assert str(order_id) in str(error)
    assert await status(conn, order_id) == "waiting"
    events = await scalar(
        conn, "SELECT count(*) FROM order_events WHERE order_id = %s AND to_status = 'paid'",
        order_id,
    )  # fmt: skip
    assert events == 0


async def test_a_covering_finished_payment_lets_the_order_become_paid(conn: Conn) -> None:
    order_id = await waiting_order(conn)
    await payment(conn, order_id)
    assert await scalar(conn, "SELECT bitloot_payment_evidence(%s)", order_id) == "payment 5001"
    await conn.execute(PAY, (order_id,))
    assert await status(conn, order_id) == "paid"


@pytest.mark.parametrize(
    ("why", "row"),
    [
        ("underpaid: half the crypto arrived", {"sent": "0.0002"}),
        ("underpaid: the price is short", {"price": "19.99"}),
        ("wrong currency", {"currency": "usd"}),
        ("no price currency", {"currency": None}),
        ("no actually_paid", {"sent": None}),
        ("pay_amount 0", {"pay": "0", "sent": "0"}),
        ("not final: confirming", {"status": "confirming"}),
        ("not final under paid_on=finished: confirmed", {"status": "confirmed"}),
        ("not a payment: partially_paid", {"status": "partially_paid"}),
        ("a re-deposit never pays an order by itself", {"parent": "4999"}),
    ],
)
async def test_a_payment_that_does_not_prove_the_total_is_refused(
    conn: Conn, why: str, row: dict[str, Any]
) -> None:
    order_id = await waiting_order(conn)
    await payment(conn, order_id, **row)
    error = await refused(conn, PAY, order_id)
    assert error.sqlstate == NO_EVIDENCE, why
    assert str(order_id) in str(error)


async def test_another_orders_payment_is_no_evidence(conn: Conn) -> None:
    order_id = await waiting_order(conn)
    other = await waiting_order(conn)
    await payment(conn, other)
    assert (await refused(conn, PAY, order_id)).sqlstate == NO_EVIDENCE


async def test_overpaying_crypto_counts_only_up_to_the_price(conn: Conn) -> None:
    """least(1, actually_paid / pay_amount): sending more crypto does not raise the price."""
    order_id = await waiting_order(conn, total="20.00")
    await payment(conn, order_id, price="10.00", sent="0.0008")
    assert (await refused(conn, PAY, order_id)).sqlstate == NO_EVIDENCE


async def test_the_tolerance_of_payment_policy_is_honoured(conn: Conn) -> None:
    order_id = await waiting_order(conn, total="20.00")
    await payment(conn, order_id, price="20.00", sent="0.00039")  # 19.50 arrived
    assert (await refused(conn, PAY, order_id)).sqlstate == NO_EVIDENCE
    await conn.execute("UPDATE payment_policy SET tolerance = 0.50")
    await conn.execute(PAY, (order_id,))
    assert await status(conn, order_id) == "paid"


async def test_paid_on_confirmed_is_honoured(conn: Conn) -> None:
    order_id = await waiting_order(conn)
    await payment(conn, order_id, status="confirmed")
    assert (await refused(conn, PAY, order_id)).sqlstate == NO_EVIDENCE
    await conn.execute("UPDATE payment_policy SET paid_on = 'confirmed'")
    await conn.execute(PAY, (order_id,))
    assert await status(conn, order_id) == "paid"


async def test_the_payment_policy_has_one_row_that_stays(conn: Conn) -> None:
    assert await scalar(conn, "SELECT count(*) FROM payment_policy") == 1
    assert (await refused(conn, "DELETE FROM payment_policy")).sqlstate == APPEND_ONLY
    error = await refused(conn, "INSERT INTO payment_policy (paid_on, tolerance) VALUES ('x', 0)")
    assert isinstance(error, psycopg.errors.UniqueViolation | psycopg.errors.CheckViolation)


async def test_an_admin_acceptance_lets_the_order_become_paid(conn: Conn) -> None:
    order_id = await waiting_order(conn)
    await payment(conn, order_id, sent="0.0002")  # short: no evidence by itself
    await conn.execute(
        "INSERT INTO payment_acceptances (order_id, admin_id, reason)"
        " VALUES (%s, 'admin-1', 'customer topped up by bank transfer')",
        (order_id,),
    )
    assert (await scalar(conn, "SELECT bitloot_payment_evidence(%s)", order_id)).startswith(
        "acceptance "
    )
    await conn.execute(PAY, (order_id,))
    assert await status(conn, order_id) == "paid"


async def test_acceptances_need_a_reason_and_are_append_only(conn: Conn) -> None:
    order_id = await waiting_order(conn)
    with pytest.raises(psycopg.errors.CheckViolation):
        await conn.execute(
            "INSERT INTO payment_acceptances (order_id, admin_id, reason) VALUES (%s, 'a', ' ')",
            (order_id,),
        )
    await conn.execute(
        "INSERT INTO payment_acceptances (order_id, admin_id, reason) VALUES (%s, 'a', 'ok')",
        (order_id,),
    )
    for sql in (
        "UPDATE payment_acceptances SET reason = 'rewritten'",
        "DELETE FROM payment_acceptances",
        "TRUNCATE payment_acceptances",
    ):
        assert (await refused(conn, sql)).sqlstate == APPEND_ONLY, sql


async def test_an_illegal_move_is_still_reported_as_such(conn: Conn) -> None:
    """created -> paid is illegal whatever the evidence: BL001 first."""
    order_id: uuid.UUID = await scalar(
        conn,
        "INSERT INTO orders (email, currency, total_amount) VALUES ('a@example.com', 'eur', 20)"
        " RETURNING id",
    )
    assert (await refused(conn, PAY, order_id)).sqlstate == "BL001"


# --- payments: forward only, fixed once final, never deleted -------------------------------


async def test_a_payment_never_moves_backwards(conn: Conn) -> None:
    order_id = await waiting_order(conn)
    await payment(conn, order_id)
    for back in ("waiting", "confirming", "partially_paid", "failed"):
        error = await refused(
            conn, "UPDATE payments SET status = %s WHERE payment_id = '5001'", back
        )
        assert error.sqlstate == FORWARD_ONLY, back
        assert "5001" in str(error)
    await conn.execute("UPDATE payments SET status = 'refunded' WHERE payment_id = '5001'")


async def test_a_payment_moves_forward_and_its_amounts_fill_in_until_final(conn: Conn) -> None:
    order_id = await waiting_order(conn)
    await payment(conn, order_id, status="waiting", sent=None)
    await conn.execute(
        "UPDATE payments SET status = 'confirming', actually_paid = 0.0004"
        " WHERE payment_id = '5001'"
    )
    await conn.execute("UPDATE payments SET status = 'finished' WHERE payment_id = '5001'")


@pytest.mark.parametrize(
    "change",
    [
        "actually_paid = 0",
        "price_amount = 1",
        "price_currency = 'usd'",
        "pay_amount = 1",
        "pay_currency = 'eth'",
        "parent_payment_id = '1'",
    ],
)
async def test_a_final_payments_amounts_never_change(conn: Conn, change: str) -> None:
    order_id = await waiting_order(conn)
    await payment(conn, order_id)
    error = await refused(conn, f"UPDATE payments SET {change} WHERE payment_id = '5001'")
    assert error.sqlstate == FORWARD_ONLY


async def test_a_payment_never_changes_order(conn: Conn) -> None:
    order_id = await waiting_order(conn)
    other = await waiting_order(conn)
    await payment(conn, order_id, status="waiting")
    error = await refused(
        conn, "UPDATE payments SET order_id = %s WHERE payment_id = '5001'", other
    )
    assert error.sqlstate == FORWARD_ONLY


async def test_payments_are_never_deleted(conn: Conn) -> None:
    order_id = await waiting_order(conn)
    await payment(conn, order_id)
    assert (await refused(conn, "DELETE FROM payments")).sqlstate == APPEND_ONLY
    assert (await refused(conn, "TRUNCATE payments CASCADE")).sqlstate == APPEND_ONLY


# --- an order's money and identity ------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    ["email = 'eve@example.com'", "total_amount = 0.01", "currency = 'usd'", "user_id = 'eve'"],
)
async def test_an_orders_money_and_identity_do_not_change_by_update(
    conn: Conn, change: str
) -> None:
    order_id = await waiting_order(conn)
    error = await refused(conn, f"UPDATE orders SET {change} WHERE id = %s", order_id)
    assert error.sqlstate == ORDER_FROZEN
    assert str(order_id) in str(error)
    assert change.split(" = ", maxsplit=1)[0] in str(error)


async def test_the_email_is_corrected_through_the_audited_function(conn: Conn) -> None:
    order_id = await waiting_order(conn)
    await conn.execute(
        "SELECT bitloot_correct_order_email(%s, 'ada@example.org', 'admin-7', 'typo in domain')",
        (order_id,),
    )
    assert await scalar(conn, "SELECT email FROM orders WHERE id = %s", order_id) == (
        "ada@example.org"
    )
    cur = await conn.execute(
        "SELECT admin_id, action, reason, details ->> 'old_email', details ->> 'new_email'"
        " FROM admin_audit_log WHERE order_id = %s",
        (order_id,),
    )
    assert await cur.fetchall() == [
        ("admin-7", "correct_order_email", "typo in domain", "ada@example.com", "ada@example.org")
    ]


async def test_the_correction_needs_an_admin_and_a_reason(conn: Conn) -> None:
    order_id = await waiting_order(conn)
    for admin, reason in (("", "why"), ("admin-7", ""), ("admin-7", None)):
        error = await refused(
            conn, "SELECT bitloot_correct_order_email(%s, 'x@example.org', %s, %s)",
            order_id, admin, reason,
        )  # fmt: skip
        assert error.sqlstate == ORDER_FROZEN
    assert await scalar(conn, "SELECT count(*) FROM admin_audit_log") == 0


async def test_an_audit_row_of_another_transaction_opens_nothing(conn: Conn) -> None:
    """The audit row must be written in the same transaction as the change."""
    order_id = await waiting_order(conn)
    correct = "SELECT bitloot_correct_order_email(%s, %s, 'admin-7', 'typo')"
    await conn.execute(correct, (order_id, "ada@example.org"))  # its own transaction
    await conn.execute(correct, (order_id, "ada@example.com"))  # and back
    # An audit row naming ada@example.org exists, from an earlier transaction: no pass.
    error = await refused(
        conn, "UPDATE orders SET email = 'ada@example.org' WHERE id = %s", order_id
    )
    assert error.sqlstate == ORDER_FROZEN


# --- the other logs: never deleted, forward only ---------------------------------------


async def delivered_order(conn: Conn) -> uuid.UUID:
    order_id = await waiting_order(conn)
    await payment(conn, order_id)
    await conn.execute(PAY, (order_id,))
    await conn.execute(
        "INSERT INTO key_delivery_logs (order_id, key_id, object_key, content_type,"
        " wrapped_data_key, master_key_id) VALUES (%s, 'k-1', %s, 'text/plain', '\\x01', 'k1')",
        (order_id, f"orders/{order_id}/k-1.bin"),
    )
    await conn.execute(
        "INSERT INTO webhook_events (provider, dedup_key, event_type, external_id, order_id,"
        " raw_body) VALUES ('nowpayments', %s, 'finished', '5001', %s, '{}')",
        (f"d-{order_id}", order_id),
    )
    await conn.execute(
        "INSERT INTO email_outbox (order_id, kind, to_address, status, attempts, sent_at)"
        " VALUES (%s, 'delivery', 'ada@example.com', 'sent', 1, now())",
        (order_id,),
    )
    await conn.execute(
        "INSERT INTO kinguin_orders (order_id, kinguin_order_id, status, payment_price)"
        " VALUES (%s, %s, 'completed', 9.5)",
        (order_id, f"KG-{order_id.hex[:8]}"),
    )
    return order_id


@pytest.mark.parametrize(
    "table", ["key_delivery_logs", "webhook_events", "email_outbox", "kinguin_orders"]
)
async def test_the_logs_are_never_deleted(conn: Conn, table: str) -> None:
    await delivered_order(conn)
    assert (await refused(conn, f"DELETE FROM {table}")).sqlstate == APPEND_ONLY
    assert (await refused(conn, f"TRUNCATE {table} CASCADE")).sqlstate == APPEND_ONLY


@pytest.mark.parametrize(
    "change",
    [
        # key_delivery_logs: where the ciphertext is, which key; status only forward
        "UPDATE key_delivery_logs SET object_key = 'elsewhere'",
        "UPDATE key_delivery_logs SET key_id = 'k-2'",
        "UPDATE key_delivery_logs SET wrapped_data_key = '\\x02'",
        # webhook_events: what was received
        'UPDATE webhook_events SET raw_body = \'{"payment_status": "finished"}\'',
        "UPDATE webhook_events SET dedup_key = 'other'",
        "UPDATE webhook_events SET order_id = gen_random_uuid()",
        # email_outbox: the address, and a sent email stays sent
        "UPDATE email_outbox SET to_address = 'eve@example.com'",
        "UPDATE email_outbox SET status = 'pending'",
        "UPDATE email_outbox SET attempts = 0",
        # kinguin_orders: which order, what it cost
        "UPDATE kinguin_orders SET kinguin_order_id = 'KG-other'",
        "UPDATE kinguin_orders SET payment_price = 0.01",
    ],
)
async def test_the_logs_move_only_as_their_meaning_says(conn: Conn, change: str) -> None:
    await delivered_order(conn)
    assert (await refused(conn, change)).sqlstate == FORWARD_ONLY


async def test_a_keys_status_only_moves_forward(conn: Conn) -> None:
    await delivered_order(conn)
    for step in ("accessed", "expired", "deleted"):
        await conn.execute("UPDATE key_delivery_logs SET status = %s", (step,))
    for back in ("stored", "accessed", "expired"):
        error = await refused(conn, "UPDATE key_delivery_logs SET status = %s", back)
        assert error.sqlstate == FORWARD_ONLY, back


async def test_a_data_key_changes_by_a_rewrap_under_another_master_key(conn: Conn) -> None:
    await delivered_order(conn)
    await conn.execute(
        "UPDATE key_delivery_logs SET wrapped_data_key = '\\x02', master_key_id = 'k2'"
    )


async def test_a_canceled_kinguin_order_may_only_become_refunded(conn: Conn) -> None:
    await delivered_order(conn)
    await conn.execute("UPDATE kinguin_orders SET status = 'canceled'")
    error = await refused(conn, "UPDATE kinguin_orders SET status = 'completed'")
    assert error.sqlstate == FORWARD_ONLY
    await conn.execute("UPDATE kinguin_orders SET status = 'refunded'")
    error = await refused(conn, "UPDATE kinguin_orders SET status = 'processing'")
    assert error.sqlstate == FORWARD_ONLY
