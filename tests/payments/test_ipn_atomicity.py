"""`apply_ipn` runs in the caller's transaction: when that transaction does not commit,
nothing of the IPN remains, not the stored event, the payment, the status, nor the job."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from ipn_support import PRICE, PRODUCT_ID, fulfillment_jobs, ipn_for, scalar, seed_product, signed

from bitloot.inbox.service import EventOutcome
from bitloot.nowpayments.models import Ipn
from bitloot.nowpayments.signature import parse_ipn_json
from bitloot.payments.service import apply_ipn


class Abort(Exception):
    """Raised inside a transaction to roll it back."""


async def waiting_order(conn: psycopg.AsyncConnection[Any]) -> uuid.UUID:
    """An order as `POST /orders` leaves it once its invoice exists."""
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
    await conn.execute(
        "UPDATE orders SET status = 'waiting', invoice_id = '4522625844' WHERE id = %s",
        (order_id,),
    )
    return order_id


async def apply_finished(conn: psycopg.AsyncConnection[Any], order_id: uuid.UUID) -> EventOutcome:
    """Apply a verified `finished` IPN that pays the whole order."""
    raw, _ = signed(ipn_for(order_id))
    return await apply_ipn(
        conn,
        Ipn.from_parsed(parse_ipn_json(raw)),
        raw_body=raw.decode("utf-8"),
        signature_variant="utf8-lists",
    )


async def assert_nothing_of_the_ipn_remains(
    conn: psycopg.AsyncConnection[Any], order_id: uuid.UUID
) -> None:
    assert await scalar(conn, "SELECT count(*) FROM webhook_events") == 0
    assert await scalar(conn, "SELECT count(*) FROM payments") == 0
    assert await scalar(conn, "SELECT status FROM orders WHERE id = %s", order_id) == "waiting"
    assert await scalar(conn, "SELECT paid_at FROM orders WHERE id = %s", order_id) is None
    to_paid = "SELECT count(*) FROM order_events WHERE to_status = 'paid'"
    assert await scalar(conn, to_paid) == 0
    assert await scalar(conn, "SELECT count(*) FROM procrastinate_jobs") == 0


async def test_rolled_back_transaction_leaves_neither_the_status_nor_the_job(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    order_id = await waiting_order(conn)
    with pytest.raises(Abort):
        async with conn.transaction():
            outcome = await apply_finished(conn, order_id)
            # Inside the transaction the IPN took full effect...
            assert (outcome.outcome, outcome.enqueued) == ("order_paid", True)
            assert await fulfillment_jobs(conn, order_id) == 1
            raise Abort
    # ...and after the rollback none of it is left.
    await assert_nothing_of_the_ipn_remains(conn, order_id)


async def test_failing_enqueue_rolls_everything_back(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    order_id = await waiting_order(conn)

    # The enqueue is a step of bitloot_apply_ipn: make the job insert fail in the database
    # (after the event, the payment and the status were written in the same call).
    await conn.execute(
        "CREATE FUNCTION test_queue_unavailable() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'queue unavailable'; END; $$"
    )
    await conn.execute(
        "CREATE TRIGGER test_queue_unavailable BEFORE INSERT ON procrastinate_jobs"
        " FOR EACH ROW EXECUTE FUNCTION test_queue_unavailable()"
    )

    with pytest.raises(psycopg.errors.RaiseException, match="queue unavailable"):
        async with conn.transaction():
            await apply_finished(conn, order_id)
    await assert_nothing_of_the_ipn_remains(conn, order_id)


async def test_rolled_back_ipn_is_applied_in_full_when_it_is_sent_again(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    order_id = await waiting_order(conn)
    with pytest.raises(Abort):
        async with conn.transaction():
            await apply_finished(conn, order_id)
            raise Abort
    async with conn.transaction():
        outcome = await apply_finished(conn, order_id)
    assert (outcome.outcome, outcome.duplicate) == ("order_paid", False)
    assert await scalar(conn, "SELECT status FROM orders WHERE id = %s", order_id) == "paid"
    assert await fulfillment_jobs(conn, order_id) == 1
