"""`bitloot_apply_ipn` (migration 0020), called in plain SQL: each rule of a payment report,
one test each. The HTTP path (POST /webhooks/nowpayments, the reconciler) calls the same
function; tests/payments drives it end to end."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from test_roles import app_url, logins  # noqa: F401 (fixtures: the application's login)

Conn = psycopg.AsyncConnection[Any]
TOTAL = Decimal("14.99")

APPLY = """
SELECT outcome, needs_attention, duplicate, enqueued, order_id
  FROM bitloot_apply_ipn(
       p_dedup_key => %(dedup_key)s, p_raw_body => '{}', p_signature_variant => 'sorted',
       p_payment_id => %(payment_id)s, p_payment_status => %(status)s,
       p_order_id => %(order_id)s, p_invoice_id => NULL,
       p_parent_payment_id => %(parent)s, p_price_amount => %(price)s,
       p_price_currency => %(price_currency)s, p_pay_amount => %(pay)s,
       p_pay_currency => 'btc', p_actually_paid => %(sent)s, p_actually_paid_at_fiat => NULL,
       p_outcome_amount => NULL, p_outcome_currency => NULL, p_provider_updated_at => NULL,
       p_actor => %(actor)s, p_actor_reason => %(actor_reason)s)
"""


async def one(conn: Conn, query: str, *args: Any) -> Any:
    cur = await conn.execute(query, args)
    row = await cur.fetchone()
    assert row is not None
    return row[0]


async def new_order(conn: Conn, status: str = "waiting") -> uuid.UUID:
    await conn.execute(
        "INSERT INTO products (product_id, name, price, currency, max_cost)"
        " VALUES ('p1', 'Game', %s, 'eur', 12) ON CONFLICT DO NOTHING",
        (TOTAL,),
    )
    order_id: uuid.UUID = await one(
        conn,
        "INSERT INTO orders (email, currency, total_amount) VALUES ('ada@example.com', 'eur', %s)"
        " RETURNING id",
        TOTAL,
    )
    await conn.execute(
        "INSERT INTO order_items (order_id, product_id, qty, unit_price, max_cost, name)"
        " VALUES (%s, 'p1', 1, %s, 12, 'A game')",
        (order_id, TOTAL),
    )
    if status != "created":
        await conn.execute("UPDATE orders SET status = 'waiting' WHERE id = %s", (order_id,))
    return order_id


async def apply(
    conn: Conn, order_id: uuid.UUID | None, status: str = "finished", **fields: Any
) -> tuple[str, bool, bool, bool, uuid.UUID | None]:
    params: dict[str, Any] = {
        "payment_id": "5001",
        "order_id": order_id,
        "status": status,
        "parent": None,
        "price": TOTAL,
        "price_currency": "eur",
        "pay": Decimal("1"),
        "sent": Decimal("1"),
        "actor": "nowpayments",
        "actor_reason": f"IPN {status}",
    } | fields
    params.setdefault(
        "dedup_key", f"{order_id}:{params['payment_id']}:{status}:{params['sent']}:{params['pay']}"
    )
    cur = await conn.execute(APPLY, params)
    row = await cur.fetchone()
    assert row is not None
    return row


async def order_status(conn: Conn, order_id: uuid.UUID) -> str:
    return str(await one(conn, "SELECT status FROM orders WHERE id = %s", order_id))


async def jobs(conn: Conn) -> list[tuple[Any, ...]]:
    cur = await conn.execute(
        "SELECT queue_name, task_name, priority, lock, queueing_lock, args, scheduled_at"
        " FROM procrastinate_jobs ORDER BY id"
    )
    return await cur.fetchall()


async def notices(conn: Conn) -> list[tuple[Any, ...]]:
    cur = await conn.execute("SELECT kind, generation, to_address, details FROM email_outbox")
    return await cur.fetchall()


async def test_a_covering_final_report_pays_queues_the_job_and_the_receipt(conn: Conn) -> None:
    order_id = await new_order(conn)
    assert await apply(conn, order_id) == ("order_paid", False, False, True, order_id)
    assert await order_status(conn, order_id) == "paid"
    outbox_id = await one(conn, "SELECT id FROM email_outbox")
    # As procrastinate's defer_async writes them (tests/payments checks a worker runs them).
    assert await jobs(conn) == [
        ("fulfillment", "fulfill_order", 0, f"order:{order_id}", None,
         {"order_id": str(order_id)}, None),
        ("email", "send_delivery_email", 0, None, None, {"outbox_id": outbox_id}, None),
    ]  # fmt: skip
    assert await notices(conn) == [
        ("payment_received", 1, "ada@example.com", {"amount": "14.99", "paid": "1 BTC"})
    ]
    cur = await conn.execute(
        "SELECT outcome, needs_attention, order_id, processed_at IS NOT NULL FROM webhook_events"
    )
    assert await cur.fetchall() == [("order_paid", False, order_id, True)]
    cur = await conn.execute(
        "SELECT from_status, to_status, actor, reason FROM order_events"
        " WHERE order_id = %s AND to_status = 'paid'",
        (order_id,),
    )
    assert await cur.fetchall() == [("waiting", "paid", "nowpayments", "payment 5001 finished")]


async def test_a_copy_is_a_duplicate_and_changes_nothing(conn: Conn) -> None:
    order_id = await new_order(conn)
    await apply(conn, order_id)
    assert await apply(conn, order_id) == ("duplicate", False, True, False, order_id)
    assert await one(conn, "SELECT count(*) FROM webhook_events") == 1
    assert len(await jobs(conn)) == 2


@pytest.mark.parametrize("named", ["nothing", "another uuid"])
async def test_a_report_for_no_order_of_ours_is_kept_and_flagged(conn: Conn, named: str) -> None:
    order_id = None if named == "nothing" else uuid.uuid4()
    assert await apply(conn, order_id) == ("unknown_order", True, False, False, None)
    stored = await one(conn, "SELECT outcome FROM webhook_events")
    assert stored == "unknown_order"
    assert await one(conn, "SELECT count(*) FROM payments") == 0


async def test_a_payment_of_another_order_is_flagged_and_not_applied(conn: Conn) -> None:
    first, second = await new_order(conn), await new_order(conn)
    await apply(conn, first, "confirming")
    result = await apply(conn, second)
    assert result == ("payment_belongs_to_another_order", True, False, False, None)
    assert await order_status(conn, second) == "waiting"


async def test_a_report_behind_the_payment_is_stale(conn: Conn) -> None:
    order_id = await new_order(conn)
    await apply(conn, order_id)
    assert (await apply(conn, order_id, "confirming"))[0] == "stale"
    assert await one(conn, "SELECT status FROM payments") == "finished"


async def test_a_redeposit_never_moves_the_order(conn: Conn) -> None:
    order_id = await new_order(conn)
    result = await apply(conn, order_id, payment_id="5002", parent="5001")
    assert result == ("redeposit_finished", True, False, False, order_id)
    assert await order_status(conn, order_id) == "waiting"
    assert await jobs(conn) == []


async def test_waiting_moves_nothing_and_confirming_moves_once(conn: Conn) -> None:
    order_id = await new_order(conn)
    assert (await apply(conn, order_id, "waiting"))[0] == "payment_waiting"
    assert (await apply(conn, order_id, "confirming"))[0] == "order_confirming"
    assert (await apply(conn, order_id, "confirmed"))[0] == "payment_in_progress"
    assert await order_status(conn, order_id) == "confirming"


@pytest.mark.parametrize(("status", "flagged"), [("failed", False), ("expired", False)])
async def test_failed_and_expired_end_the_order(conn: Conn, status: str, flagged: bool) -> None:
    order_id = await new_order(conn)
    assert await apply(conn, order_id, status) == (f"order_{status}", flagged, False, False,
                                                   order_id)  # fmt: skip
    assert await order_status(conn, order_id) == status


async def test_refunded_moves_a_paid_order_and_is_flagged(conn: Conn) -> None:
    order_id = await new_order(conn)
    await apply(conn, order_id)
    assert (await apply(conn, order_id, "refunded"))[:2] == ("order_refunded", True)
    assert await order_status(conn, order_id) == "refunded"


async def test_partially_paid_is_underpaid_with_the_shortfall(conn: Conn) -> None:
    order_id = await new_order(conn)
    result = await apply(conn, order_id, "partially_paid", sent=Decimal("0.5"))
    assert result == ("order_underpaid", True, False, False, order_id)
    # 14.99 * 0.5 = 7.495: the reason rounds half to even, the notice rounds down.
    reason = await one(conn, "SELECT status_reason FROM orders WHERE id = %s", order_id)
    assert reason == "paid 7.50 of 14.99 eur"
    assert await notices(conn) == [
        ("underpaid", 1, "ada@example.com",
         {"received": "7.49", "missing": "7.50", "paid": "0.5 BTC"}),
    ]  # fmt: skip
    assert [job[1] for job in await jobs(conn)] == ["send_delivery_email"]


async def test_a_final_report_in_another_currency_fails_the_order(conn: Conn) -> None:
    order_id = await new_order(conn)
    assert (await apply(conn, order_id, price_currency="usd"))[:2] == ("order_failed", True)
    reason = await one(conn, "SELECT status_reason FROM orders WHERE id = %s", order_id)
    assert reason == "paid in usd, order is in eur"


async def test_a_final_report_without_amounts_proves_nothing(conn: Conn) -> None:
    order_id = await new_order(conn)
    result = await apply(conn, order_id, sent=None, pay=Decimal("0"))
    assert result[:2] == ("order_underpaid", True)
    reason = await one(conn, "SELECT status_reason FROM orders WHERE id = %s", order_id)
    assert reason == "payment 5001 finished proves no amount (no actually_paid, pay_amount 0)"
    details = await one(conn, "SELECT details FROM email_outbox")
    assert details == {}


async def test_a_short_final_report_is_underpaid_unless_within_the_tolerance(conn: Conn) -> None:
    short, tolerated = await new_order(conn), await new_order(conn)
    sent = Decimal("0.98")  # 14.69 of 14.99: 0.30 short
    assert (await apply(conn, short, sent=sent))[0] == "order_underpaid"
    await conn.execute("UPDATE payment_policy SET tolerance = 0.50")
    assert (await apply(conn, tolerated, payment_id="5002", sent=sent))[0] == "order_paid"


async def test_confirmed_pays_only_when_the_policy_says_so(conn: Conn) -> None:
    before, after = await new_order(conn), await new_order(conn)
    assert (await apply(conn, before, "confirmed"))[0] == "order_confirming"
    await conn.execute("UPDATE payment_policy SET paid_on = 'confirmed'")
    assert (await apply(conn, after, "confirmed", payment_id="5002"))[0] == "order_paid"


@pytest.mark.parametrize(
    ("sent", "outcome"), [("1", "underpaid_now_covered"), ("0.9", "still_underpaid")]
)
async def test_a_final_report_never_moves_an_underpaid_order(
    conn: Conn, sent: str, outcome: str
) -> None:
    order_id = await new_order(conn)
    await apply(conn, order_id, "partially_paid", sent=Decimal("0.5"))
    assert await apply(conn, order_id, sent=Decimal(sent)) == (outcome, True, False, False,
                                                               order_id)  # fmt: skip
    assert await order_status(conn, order_id) == "underpaid"


async def test_bad_news_for_a_settled_order_moves_nothing(conn: Conn) -> None:
    order_id = await new_order(conn)
    await apply(conn, order_id)
    result = await apply(conn, order_id, "failed", payment_id="5002")
    assert result == ("order_already_paid", False, False, False, order_id)


async def test_a_created_order_moves_through_waiting(conn: Conn) -> None:
    order_id = await new_order(conn, status="created")
    assert (await apply(conn, order_id))[0] == "order_paid"
    cur = await conn.execute(
        "SELECT from_status, to_status FROM order_events WHERE order_id = %s ORDER BY id",
        (order_id,),
    )
    assert await cur.fetchall() == [(None, "created"), ("created", "waiting"), ("waiting", "paid")]


async def test_without_an_actor_the_transaction_keeps_its_own(conn: Conn) -> None:
    order_id = await new_order(conn)
    async with conn.transaction():
        await conn.execute("SELECT set_config('bitloot.actor', 'reconciler', true)")
        await apply(conn, order_id, "expired", actor=None, actor_reason=None)
    actor = await one(
        conn, "SELECT actor FROM order_events WHERE order_id = %s AND to_status = 'expired'",
        order_id,
    )  # fmt: skip
    assert actor == "reconciler"


@pytest.mark.parametrize(
    ("amount", "cents"), [("7.495", "7.50"), ("7.485", "7.48"), ("7.4851", "7.49"), ("0", "0.00")]
)
async def test_reasons_round_cents_half_to_even(conn: Conn, amount: str, cents: str) -> None:
    assert str(await one(conn, "SELECT bitloot_round_cents(%s::numeric)", amount)) == cents


async def test_the_application_role_may_apply_a_report(
    conn: Conn, request: pytest.FixtureRequest
) -> None:
    order_id = await new_order(conn)
    url = request.getfixturevalue("app_url")  # serve's login in production (test_roles)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as app:
        assert (await apply(app, order_id))[:4] == ("order_paid", False, False, True)
    assert await order_status(conn, order_id) == "paid"
