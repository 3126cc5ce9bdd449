"""`run_fulfillment` against the simulator: one purchase per order whatever fails between.

No worker runs: each `run_fulfillment(rt, order_id)` call is one pass of the `fulfill_order`
job, and a "crash" is the state a dead pass leaves behind.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from bitloot.fulfillment import collect
from bitloot.fulfillment.purchase import recover_placed
from bitloot.fulfillment.service import run_fulfillment
from bitloot.kinguin.errors import KinguinServerError
from bitloot.kinguin.models import OrderProductRequest
from bitloot.resources import Resources
from bitloot.sim.kinguin_catalog import TEXT_PRODUCT_ID

Conn = psycopg.AsyncConnection[Any]
One = Callable[..., Awaitable[Any]]


@pytest.fixture(autouse=True)
async def quiet_sim(sim_ctl: Any) -> AsyncIterator[None]:
    """No API runs here: the sim's webhooks would only be refused and retried."""
    await sim_ctl.call("POST", "/config", {"webhook_url": None})
    await sim_ctl.call("POST", "/delivery", {"delay": 0, "gradual": False})
    yield


async def state(conn: Conn, order_id: uuid.UUID) -> tuple[str, str, str | None]:
    cur = await conn.execute(
        "SELECT status, fulfillment_status, fulfillment_error FROM orders WHERE id = %s",
        (order_id,),
    )
    row = await cur.fetchone()
    assert row is not None
    return row[0], row[1], row[2]


async def recorded(conn: Conn, order_id: uuid.UUID) -> tuple[str, str, int] | None:
    cur = await conn.execute(
        "SELECT kinguin_order_id, status, polls FROM kinguin_orders WHERE order_id = %s",
        (order_id,),
    )
    row = await cur.fetchone()
    return None if row is None else (row[0], row[1], row[2])


async def key_rows(conn: Conn, order_id: uuid.UUID) -> list[tuple[str, str]]:
    cur = await conn.execute(
        "SELECT key_id, object_key FROM key_delivery_logs WHERE order_id = %s ORDER BY key_id",
        (order_id,),
    )
    return [(r[0], r[1]) for r in await cur.fetchall()]


async def jobs(conn: Conn, task: str = "fulfill_order") -> list[tuple[str, bool]]:
    """(status, scheduled in the future) of every job of one task."""
    cur = await conn.execute(
        "SELECT status, coalesce(scheduled_at > now(), false) FROM procrastinate_jobs"
        " WHERE task_name = %s ORDER BY id",
        (task,),
    )
    return [(r[0], r[1]) for r in await cur.fetchall()]


async def retry_failed(conn: Conn, order_id: uuid.UUID) -> None:
    """What an admin's retry does: the audited failed -> pending move."""
    await conn.execute(
        "UPDATE orders SET fulfillment_status = 'pending' WHERE id = %s AND"
        " fulfillment_status = 'failed'",
        (order_id,),
    )


async def assert_fulfilled_once(
    conn: Conn, sim_ctl: Any, order_id: uuid.UUID, keys: int = 1
) -> None:
    assert await state(conn, order_id) == ("fulfilled", "fulfilled", None)
    orders = await sim_ctl.orders(order_id)
    assert len(orders) == 1, orders
    sim_keys = sorted(k["id"] for p in orders[0]["products"] for k in p["keys"])
    assert [k for k, _ in await key_rows(conn, order_id)] == sim_keys
    assert len(sim_keys) == keys
    rec = await recorded(conn, order_id)
    assert rec is not None
    assert rec[0] == orders[0]["orderId"]


# --- (a) a crash between placing and recording -----------------------------------------


async def test_lost_answer_of_place_order_is_recovered_by_external_id(
    conn: Conn, sim_ctl: Any, runtime: Resources, paid_order: Any, kinguin_calls: Any
) -> None:
    order_id = await paid_order()
    await sim_ctl.call(
        "POST",
        "/faults/errors",
        {"status": 500, "count": 1, "endpoints": ["place_order"], "when": "after"},
    )
    await run_fulfillment(runtime, order_id)
    assert ("place_order", "server_error") in kinguin_calls.calls
    assert kinguin_calls.count("place_order") == 1  # found, not bought again
    assert await state(conn, order_id) == ("fulfilled", "fulfilled", None)
    await assert_fulfilled_once(conn, sim_ctl, order_id)


async def test_pass_that_died_after_placing_is_recovered_by_the_next_pass(
    conn: Conn, sim_ctl: Any, runtime: Resources, paid_order: Any, kinguin_calls: Any
) -> None:
    # The answer is lost and the search fails too: the pass dies (a retryable error, so
    # procrastinate retries the job) with a Kinguin order placed but not recorded.
    order_id = await paid_order()
    await sim_ctl.call(
        "POST",
        "/faults/errors",
        {"status": 500, "count": 1, "endpoints": ["place_order"], "when": "after"},
    )
    await sim_ctl.call(
        "POST", "/faults/errors", {"status": 503, "count": 5, "endpoints": ["search_orders"]}
    )
    with pytest.raises(KinguinServerError):
        await run_fulfillment(runtime, order_id)
    assert await recorded(conn, order_id) is None
    assert len(await sim_ctl.orders(order_id)) == 1
    assert await state(conn, order_id) == ("paid", "processing", None)

    kinguin_calls.calls.clear()
    await run_fulfillment(runtime, order_id)  # the retried job
    assert kinguin_calls.count("place_order") == 0
    assert kinguin_calls.count("find_order") == 1
    await assert_fulfilled_once(conn, sim_ctl, order_id)


async def test_crash_after_placing_before_recording(
    conn: Conn, sim_ctl: Any, runtime: Resources, paid_order: Any, kinguin_calls: Any
) -> None:
    order_id = await paid_order()
    # What the dead pass left: placement marked (and committed), the order bought at
    # Kinguin with orderExternalId = our id, and nothing recorded.
    await conn.execute(
        "UPDATE orders SET fulfillment_status = 'processing',"
        " kinguin_placement_started_at = now() WHERE id = %s",
        (order_id,),
    )
    line = OrderProductRequest(
        product_id=TEXT_PRODUCT_ID, qty=1, price=Decimal("15.00"), key_type="text"
    )
    kinguin = runtime.kinguin_client
    placed = await kinguin.place_order(
        [line], str(order_id), recover=recover_placed(kinguin, str(order_id))
    )
    kinguin_calls.calls.clear()

    await run_fulfillment(runtime, order_id)
    assert kinguin_calls.count("place_order") == 0
    assert kinguin_calls.count("find_order") == 1
    rec = await recorded(conn, order_id)
    assert rec is not None
    assert rec[0] == placed.order_id
    await assert_fulfilled_once(conn, sim_ctl, order_id)


async def test_crash_after_marking_before_placing_buys_once(
    conn: Conn, sim_ctl: Any, runtime: Resources, paid_order: Any, kinguin_calls: Any
) -> None:
    order_id = await paid_order()
    await conn.execute(
        "UPDATE orders SET fulfillment_status = 'processing',"
        " kinguin_placement_started_at = now() WHERE id = %s",
        (order_id,),
    )
    await run_fulfillment(runtime, order_id)
    assert kinguin_calls.count("find_order") == 1
    assert kinguin_calls.count("place_order") == 1
    await assert_fulfilled_once(conn, sim_ctl, order_id)


# --- (b) passes after completion ----------------------------------------------------------


async def test_passes_after_fulfillment_buy_nothing_more(
    conn: Conn, sim_ctl: Any, runtime: Resources, paid_order: Any, kinguin_calls: Any
) -> None:
    order_id = await paid_order(qty=3)
    await run_fulfillment(runtime, order_id)
    await assert_fulfilled_once(conn, sim_ctl, order_id, keys=3)
    rows = await key_rows(conn, order_id)
    calls = len(kinguin_calls.calls)

    await run_fulfillment(runtime, order_id)
    await run_fulfillment(runtime, order_id)
    assert len(kinguin_calls.calls) == calls  # not even a read
    assert await key_rows(conn, order_id) == rows
    await assert_fulfilled_once(conn, sim_ctl, order_id, keys=3)
    assert await jobs(conn) == []
    assert await jobs(conn, "send_delivery_email") == [("todo", False)]
    cur = await conn.execute("SELECT count(*) FROM email_outbox WHERE order_id = %s", (order_id,))
    assert await cur.fetchone() == (1,)


async def test_crash_before_the_final_commit_stores_the_keys_once(
    conn: Conn,
    sim_ctl: Any,
    runtime: Resources,
    paid_order: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Keys sealed and uploaded, then the pass dies inside the recording transaction.
    order_id = await paid_order(qty=2)

    async def crash(*_args: Any) -> int:
        raise RuntimeError("worker killed")

    monkeypatch.setattr(collect, "queue_delivery_email", crash, raising=True)
    with pytest.raises(RuntimeError):
        await run_fulfillment(runtime, order_id)
    assert await key_rows(conn, order_id) == []
    assert await state(conn, order_id) == ("paid", "processing", None)

    monkeypatch.undo()
    await run_fulfillment(runtime, order_id)
    await assert_fulfilled_once(conn, sim_ctl, order_id, keys=2)
    for _, object_key in await key_rows(conn, order_id):
        assert await runtime.storage.exists(object_key)


# --- (c) and (d) keys that take their time ------------------------------------------------


async def test_gradual_keys_re_defer_instead_of_blocking(
    conn: Conn, sim_ctl: Any, runtime: Resources, paid_order: Any
) -> None:
    await sim_ctl.call("POST", "/delivery", {"delay": 60, "gradual": True, "instant_keys": 1})
    order_id = await paid_order(qty=2)

    started = time.monotonic()
    await run_fulfillment(runtime, order_id)
    assert time.monotonic() - started < 3
    rec = await recorded(conn, order_id)
    assert rec is not None
    assert rec[1:] == ("processing", 1)
    assert await jobs(conn) == [("todo", True)]  # one poll, scheduled in the future
    assert await state(conn, order_id) == ("paid", "processing", None)
    assert await key_rows(conn, order_id) == []  # 1 of 2 keys is not a delivery

    # Another pass (say, a webhook's job) before the poll: one poll chain, not two.
    await run_fulfillment(runtime, order_id)
    assert (await recorded(conn, order_id) or ("", "", 0))[2] == 2
    assert await jobs(conn) == [("todo", True)]

    kinguin_order_id = rec[0]
    await sim_ctl.call("POST", f"/orders/{kinguin_order_id}/complete")
    await run_fulfillment(runtime, order_id)
    await assert_fulfilled_once(conn, sim_ctl, order_id, keys=2)
    assert (await recorded(conn, order_id) or ("", "", 0))[1] == "completed"


async def test_too_many_polls_fail_with_a_reason_and_a_retry_polls_again(
    conn: Conn,
    sim_ctl: Any,
    runtime: Resources,
    paid_order: Any,
    make_settings: Callable[..., Any],
) -> None:
    runtime.settings = make_settings(kinguin_max_polls=2)
    await sim_ctl.call("POST", "/delivery", {"delay": 60, "gradual": True})
    order_id = await paid_order()

    for _ in range(3):
        await run_fulfillment(runtime, order_id)
    status, fulfillment, error = await state(conn, order_id)
    assert (status, fulfillment) == ("paid", "failed")
    assert error == "keys not delivered after 2 polls of Kinguin"
    # The event says the cause too: the poll limit, the Kinguin order and the setting.
    rec = await recorded(conn, order_id)
    assert rec is not None
    cur = await conn.execute(
        "SELECT actor, reason FROM order_events WHERE order_id = %s AND to_status = 'failed'",
        (order_id,),
    )
    assert await cur.fetchall() == [
        (
            "worker",
            f"keys not delivered after 2 polls of Kinguin order {rec[0]}"
            " (limit BITLOOT_KINGUIN_MAX_POLLS=2)",
        )
    ]
    await run_fulfillment(runtime, order_id)  # failed stays failed until a human says
    assert (await state(conn, order_id))[1] == "failed"

    # An admin retry while Kinguin is still slow gets a fresh round of polls.
    await retry_failed(conn, order_id)
    await run_fulfillment(runtime, order_id)
    assert await state(conn, order_id) == ("paid", "processing", None)
    rec = await recorded(conn, order_id)
    assert rec is not None
    assert rec[2] == 1

    await sim_ctl.call("POST", f"/orders/{rec[0]}/complete")
    await run_fulfillment(runtime, order_id)
    await assert_fulfilled_once(conn, sim_ctl, order_id)


# --- (e) permanent refusals ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "break_it", "fix_it"),
    [
        (
            "ProductUnavailable",
            ("POST", f"/products/{TEXT_PRODUCT_ID}/stock", {"qty": 0}),
            ("POST", f"/products/{TEXT_PRODUCT_ID}/stock", {"qty": None}),
        ),
        (
            "InsufficientBalance",
            ("POST", "/balance", {"balance": 0}),
            ("POST", "/balance", {"balance": 1000}),
        ),
    ],
)
async def test_refusal_fails_with_the_kind_and_a_retry_buys_once(
    conn: Conn,
    sim_ctl: Any,
    runtime: Resources,
    paid_order: Any,
    kinguin_calls: Any,
    kind: str,
    break_it: tuple[str, str, Any],
    fix_it: tuple[str, str, Any],
) -> None:
    order_id = await paid_order()
    await sim_ctl.call(*break_it)
    await run_fulfillment(runtime, order_id)
    status, fulfillment, error = await state(conn, order_id)
    assert (status, fulfillment) == ("paid", "failed")
    assert error is not None
    assert kind in error
    assert await recorded(conn, order_id) is None
    assert await sim_ctl.orders() == []
    assert kinguin_calls.count("place_order") == 1  # permanent: not retried

    await sim_ctl.call(*fix_it)
    await retry_failed(conn, order_id)
    await run_fulfillment(runtime, order_id)
    await assert_fulfilled_once(conn, sim_ctl, order_id)
    assert kinguin_calls.count("place_order") == 2


@pytest.mark.parametrize("fate", ["canceled", "refunded"])
async def test_order_ended_at_kinguin_fails_and_a_retry_does_not_buy_again(
    conn: Conn, sim_ctl: Any, runtime: Resources, paid_order: Any, fate: str
) -> None:
    await sim_ctl.call("POST", "/faults/outcomes", {"outcomes": [fate]})
    order_id = await paid_order()
    await run_fulfillment(runtime, order_id)  # places it; the sim ends it at once (delay 0)
    await run_fulfillment(runtime, order_id)  # the poll re-reads it
    rec = await recorded(conn, order_id)
    assert rec is not None
    assert rec[1] == fate
    assert await state(conn, order_id) == (
        "paid",
        "failed",
        f"Kinguin order {rec[0]} was {fate}",
    )
    # A blind retry re-reads the same Kinguin order: it never buys a second one.
    await retry_failed(conn, order_id)
    await run_fulfillment(runtime, order_id)
    assert (await state(conn, order_id))[1] == "failed"
    assert len(await sim_ctl.orders()) == 1
