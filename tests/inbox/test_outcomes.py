"""Webhook outcomes are one closed list, known to the code (`Outcome`) and to the database
(`webhook_outcomes`, referenced by `webhook_events.outcome`): the two hold the same values
and meanings, and the database refuses any other value."""

from __future__ import annotations

from typing import Any, get_args

import psycopg
import pytest

from bitloot.inbox import outcomes
from bitloot.inbox.outcomes import Outcome
from bitloot.kinguin.models import OrderStatus
from bitloot.nowpayments.models import PAYMENT_STATUSES

Conn = psycopg.AsyncConnection[Any]
# The order statuses a payment report may still move (bitloot_apply_ipn, migration 0020).
OPEN_ORDER = {"created", "waiting", "confirming"}


async def rows(conn: Conn, query: str) -> list[tuple[Any, ...]]:
    cur = await conn.execute(query)
    return await cur.fetchall()


async def insert_event(conn: Conn, outcome: str | None) -> None:
    await conn.execute(
        "INSERT INTO webhook_events (provider, dedup_key, event_type, raw_body, outcome)"
        " VALUES ('nowpayments', coalesce(%(outcome)s, '-'), 'finished', '{}', %(outcome)s)",
        {"outcome": outcome},
    )


async def test_the_enum_and_the_table_hold_the_same_outcomes(conn: Conn) -> None:
    table = await rows(conn, "SELECT outcome, provider, meaning FROM webhook_outcomes")
    code = [(o.value, o.provider, o.meaning) for o in Outcome]
    assert sorted(table) == sorted(code)


def test_every_outcome_has_a_meaning_and_a_provider_or_none() -> None:
    for outcome in Outcome:
        assert outcome.meaning.strip(), outcome
        assert "\n" not in outcome.meaning, outcome
        assert outcome.provider in (None, "nowpayments", "kinguin"), outcome
    assert Outcome("order_paid") is Outcome.ORDER_PAID
    assert Outcome.ORDER_PAID == "order_paid" and f"{Outcome.STALE}" == "stale"


async def test_the_database_refuses_an_unknown_outcome(conn: Conn) -> None:
    await insert_event(conn, None)  # not processed yet
    await insert_event(conn, Outcome.ORDER_PAID)
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        await insert_event(conn, "applied")
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        await conn.execute("UPDATE webhook_events SET outcome = 'paid'")
    stored = await rows(conn, "SELECT outcome FROM webhook_events ORDER BY id")
    assert stored == [(None,), ("order_paid",)]


async def test_the_status_tables_cover_every_status_the_schema_allows(conn: Conn) -> None:
    """Each status-dependent outcome exists for exactly the statuses that can lead to it."""
    every_status = await rows(
        conn,
        "SELECT from_status FROM order_status_transitions"
        " UNION SELECT to_status FROM order_status_transitions",
    )
    order_statuses = {s for (s,) in every_status}
    assert set(outcomes.REDEPOSIT) == set(PAYMENT_STATUSES)
    # A report moves a waiting order to any status that order may move to.
    moves = await rows(
        conn, "SELECT to_status FROM order_status_transitions WHERE from_status = 'waiting'"
    )
    assert set(outcomes.ORDER_MOVED) == {s for (s,) in moves}
    # A report that would move the order finds it in any status but the open ones.
    assert set(outcomes.ORDER_ALREADY) == order_statuses - set(OPEN_ORDER)
    # A Kinguin event queues a job for any Kinguin status but processing (noted).
    assert set(outcomes.FULFILLMENT_ENQUEUED) == set(get_args(OrderStatus)) - {"processing"}
    # Any (status, fulfillment_status) pair the orders CHECK constraints allow, but the two
    # that await keys; PostgreSQL itself says which pairs those are.
    every_fulfillment = await rows(
        conn,
        "SELECT from_status FROM fulfillment_status_transitions"
        " UNION SELECT to_status FROM fulfillment_status_transitions",
    )
    fulfillment_statuses = {s for (s,) in every_fulfillment}
    await conn.execute("CREATE TEMP TABLE order_states (LIKE orders INCLUDING ALL)")
    allowed = set()
    for status in order_statuses:
        for fulfillment in fulfillment_statuses:
            try:
                await conn.execute(
                    "INSERT INTO order_states (email, currency, total_amount, status,"
                    " fulfillment_status) VALUES ('a@b.c', 'eur', 1, %s, %s)",
                    (status, fulfillment),
                )
            except psycopg.errors.CheckViolation:
                continue
            allowed.add((status, fulfillment))
    awaiting_keys = {("paid", "pending"), ("paid", "processing")}
    assert awaiting_keys <= allowed
    assert set(outcomes.ORDER_NOT_AWAITING_KEYS) == allowed - awaiting_keys


def test_a_status_without_an_outcome_is_refused() -> None:
    assert Outcome.redeposit("finished") is Outcome.REDEPOSIT_FINISHED
    assert Outcome.order_moved("paid") is Outcome.ORDER_PAID
    assert Outcome.order_already("refunded") is Outcome.ORDER_ALREADY_REFUNDED
    assert Outcome.fulfillment_enqueued("canceled") is Outcome.FULFILLMENT_ENQUEUED_CANCELED
    assert Outcome.order_not_awaiting_keys("paid", "failed") is Outcome.ORDER_PAID_FAILED
    with pytest.raises(ValueError, match="no webhook outcome"):
        Outcome.order_already("waiting")
    with pytest.raises(ValueError, match="no webhook outcome"):
        Outcome.order_not_awaiting_keys("paid", "pending")
