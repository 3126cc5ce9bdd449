"""The worker asks the database's rule (`bitloot_payment_evidence`) before it buys: a paid
order whose evidence is gone (its payment refunded since) fails instead of buying."""

from __future__ import annotations

from typing import Any

import psycopg

from bitloot.fulfillment.service import NO_EVIDENCE, run_fulfillment
from bitloot.resources import Resources

Conn = psycopg.AsyncConnection[Any]


async def test_a_paid_order_without_evidence_is_failed_not_bought(
    conn: Conn, runtime: Resources, paid_order: Any, kinguin_calls: Any
) -> None:
    order_id = await paid_order()
    # Paid with a covering payment (the fixture's), then the payment was refunded: the order
    # stays paid (nothing moved it), but nothing proves it paid any more.
    await conn.execute("UPDATE payments SET status = 'refunded' WHERE order_id = %s", (order_id,))

    await run_fulfillment(runtime, order_id)

    assert kinguin_calls.calls == []
    cur = await conn.execute(
        "SELECT status, fulfillment_status, fulfillment_error, kinguin_placement_started_at"
        " FROM orders WHERE id = %s",
        (order_id,),
    )
    assert await cur.fetchone() == ("paid", "failed", NO_EVIDENCE, None)
    cur = await conn.execute(
        "SELECT actor, reason FROM order_events WHERE order_id = %s AND machine = 'fulfillment'",
        (order_id,),
    )
    assert await cur.fetchall() == [("worker", NO_EVIDENCE)]


async def test_a_paid_order_with_evidence_is_bought(
    conn: Conn, runtime: Resources, paid_order: Any, kinguin_calls: Any
) -> None:
    order_id = await paid_order()
    await run_fulfillment(runtime, order_id)
    assert kinguin_calls.count("place_order") == 1


async def test_a_kinguin_refusal_is_kept_with_its_error_code(
    conn: Conn, runtime: Resources, paid_order: Any, sim_ctl: Any
) -> None:
    """Issue 14, item 3: the order_events row of the failure names Kinguin's error code."""
    await sim_ctl.call("POST", "/config", {"webhook_url": None})
    await sim_ctl.call(
        "POST",
        "/faults/errors",
        {"status": 422, "kind": "OrderFailed", "count": 1, "endpoints": ["place_order"]},
    )
    order_id = await paid_order()
    await run_fulfillment(runtime, order_id)
    cur = await conn.execute(
        "SELECT o.fulfillment_error, e.actor, e.reason FROM orders o"
        " JOIN order_events e ON e.order_id = o.id AND e.to_status = 'failed' WHERE o.id = %s",
        (order_id,),
    )
    row = await cur.fetchone()
    assert row is not None
    error, actor, reason = row
    assert actor == "worker"
    assert reason == error
    assert reason.startswith("Kinguin refused the order: OrderFailed (HTTP 422)")
