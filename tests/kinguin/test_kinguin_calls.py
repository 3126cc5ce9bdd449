"""Every Kinguin call made for an order is one append-only `kinguin_calls` row (issue 14,
item 3): written by `run_fulfillment` at the end of each pass, however the pass ends."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from bitloot.fulfillment.service import run_fulfillment
from bitloot.kinguin.errors import KinguinServerError
from bitloot.resources import Resources
from bitloot.sim.kinguin_catalog import TEXT_PRODUCT_ID

Conn = psycopg.AsyncConnection[Any]
Row = tuple[str, int, str, int | None, str | None]


@pytest.fixture(autouse=True)
async def quiet_sim(sim_ctl: Any) -> AsyncIterator[None]:
    """No API runs here: the sim's webhooks would only be refused and retried."""
    await sim_ctl.call("POST", "/config", {"webhook_url": None})
    await sim_ctl.call("POST", "/delivery", {"delay": 0, "gradual": False})
    yield


async def calls(conn: Conn, order_id: uuid.UUID) -> list[Row]:
    """(endpoint, attempt, outcome, http_status, error_code) of the order, in call order."""
    cur = await conn.execute(
        "SELECT endpoint, attempt, outcome, http_status, error_code, latency_ms"
        " FROM kinguin_calls WHERE order_id = %s ORDER BY id",
        (order_id,),
    )
    rows = await cur.fetchall()
    assert all(r[5] >= 0 for r in rows)
    return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]


async def test_a_fulfilled_order_has_one_ok_row_per_call(
    conn: Conn, runtime: Resources, paid_order: Any
) -> None:
    order_id = await paid_order()
    await run_fulfillment(runtime, order_id)
    assert await calls(conn, order_id) == [
        ("place_order", 1, "ok", 201, None),
        ("get_keys", 1, "ok", 200, None),
    ]
    # A later pass (a duplicate webhook's job) buys nothing and calls nothing.
    await run_fulfillment(runtime, order_id)
    assert len(await calls(conn, order_id)) == 2


async def test_a_5xx_burst_shows_each_retried_attempt_with_its_status(
    conn: Conn, sim_ctl: Any, runtime: Resources, paid_order: Any
) -> None:
    order_id = await paid_order()
    await sim_ctl.call(
        "POST", "/faults/errors", {"status": 503, "count": 2, "endpoints": ["get_keys"]}
    )
    await run_fulfillment(runtime, order_id)
    assert await calls(conn, order_id) == [
        ("place_order", 1, "ok", 201, None),
        ("get_keys", 1, "server_error", 503, "Error"),
        ("get_keys", 2, "server_error", 503, "Error"),
        ("get_keys", 3, "ok", 200, None),
    ]


async def test_a_lost_placement_answer_shows_the_recovery_lookup(
    conn: Conn, sim_ctl: Any, runtime: Resources, paid_order: Any
) -> None:
    order_id = await paid_order()
    await sim_ctl.call(
        "POST",
        "/faults/errors",
        {"status": 500, "count": 1, "endpoints": ["place_order"], "when": "after"},
    )
    await run_fulfillment(runtime, order_id)
    assert await calls(conn, order_id) == [
        ("place_order", 1, "server_error", 500, "Error"),
        ("find_order", 1, "ok", 200, None),  # the recover hook: found, not bought again
        ("get_keys", 1, "ok", 200, None),
    ]


async def test_a_pass_that_raises_still_records_its_calls(
    conn: Conn, sim_ctl: Any, runtime: Resources, paid_order: Any
) -> None:
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
    rows = await calls(conn, order_id)
    assert rows == [
        ("place_order", 1, "server_error", 500, "Error"),
        *[("find_order", n, "server_error", 503, "Error") for n in range(1, 6)],
    ]

    await run_fulfillment(runtime, order_id)  # the retried job finds the order
    assert (await calls(conn, order_id))[len(rows) :] == [
        ("find_order", 1, "ok", 200, None),
        ("get_keys", 1, "ok", 200, None),
    ]


@pytest.mark.parametrize(
    ("kind", "break_it"),
    [
        ("ProductUnavailable", ("POST", f"/products/{TEXT_PRODUCT_ID}/stock", {"qty": 0})),
        ("InsufficientBalance", ("POST", "/balance", {"balance": 0})),
    ],
)
async def test_a_refused_placement_shows_the_error_code(
    conn: Conn,
    sim_ctl: Any,
    runtime: Resources,
    paid_order: Any,
    kind: str,
    break_it: tuple[str, str, Any],
) -> None:
    order_id = await paid_order()
    await sim_ctl.call(*break_it)
    await run_fulfillment(runtime, order_id)
    [(endpoint, attempt, outcome, status, code)] = await calls(conn, order_id)
    assert (endpoint, attempt, outcome, code) == ("place_order", 1, kind, kind)
    assert status is not None and 400 <= status < 500


async def test_concurrent_passes_keep_their_calls_apart(
    conn: Conn, runtime: Resources, paid_order: Any
) -> None:
    """One client serves every job of a worker: each pass records only its own calls."""
    first, second = await paid_order(), await paid_order()
    await asyncio.gather(run_fulfillment(runtime, first), run_fulfillment(runtime, second))
    for order_id in (first, second):
        assert [c[0] for c in await calls(conn, order_id)] == ["place_order", "get_keys"]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE kinguin_calls SET outcome = 'ok'",
        "DELETE FROM kinguin_calls",
        "TRUNCATE kinguin_calls",
    ],
)
async def test_rows_cannot_be_changed_or_deleted(
    conn: Conn, runtime: Resources, paid_order: Any, statement: str
) -> None:
    order_id = await paid_order()
    await run_fulfillment(runtime, order_id)
    assert await calls(conn, order_id)
    with pytest.raises(psycopg.Error) as refused:
        await conn.execute(statement)
    assert refused.value.sqlstate == "BL002"
    assert len(await calls(conn, order_id)) == 2
