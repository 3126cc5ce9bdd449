"""Payments end to end: an order made through `POST /orders`, paid through the NOWPayments
simulator, whose signed IPNs reach the real API over HTTP and land in PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any
from unittest.mock import ANY

import aiohttp
import pytest
from harness import Served, serve_app
from ipn_support import (
    BTC_PER_EUR,
    PRICE,
    create_order,
    fulfillment_jobs,
    invoice_id,
    ipn_for,
    order_status,
    order_trail,
    pay,
    post_ipn,
    scalar,
    seed_product,
    signed,
)

from bitloot.config import Settings
from bitloot.server import build_app


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def serve_api(
    make_settings: Callable[..., Settings], api_port: int
) -> AsyncIterator[Callable[..., Awaitable[Served]]]:
    """Start the API on `api_port` (where the simulator sends IPNs) with `overrides`."""
    started: list[Served] = []

    async def start(**overrides: object) -> Served:
        served = await serve_app(await build_app(make_settings(**overrides)), api_port)
        started.append(served)
        return served

    yield start
    for served in started:
        await served.runner.cleanup()


async def paid_order(
    http: aiohttp.ClientSession, api: Served, sim: Served, conn: Any, **plan: Any
) -> tuple[uuid.UUID, dict[str, Any]]:
    """Create an order through the API and drive its invoice's payment with `plan`."""
    order_id = await create_order(http, api.url, conn)
    result = await pay(http, sim.url, await invoice_id(conn, order_id), **plan)
    return order_id, result


async def arrivals(conn: Any) -> list[str]:
    """The statuses of the stored IPNs, in the order they arrived."""
    cur = await conn.execute("SELECT event_type FROM webhook_events ORDER BY id")
    return [row[0] for row in await cur.fetchall()]


def btc(fiat: str) -> str:
    """The BTC amount the simulator's rate gives for a fiat amount."""
    return str(Decimal(fiat) * BTC_PER_EUR)


# --- the happy path ------------------------------------------------------------------------


async def test_waiting_confirming_finished_pays_the_order_with_one_job(
    api: Served, sim: Served, conn: Any, http: aiohttp.ClientSession
) -> None:
    order_id, _ = await paid_order(
        http, api, sim, conn, statuses=["waiting", "confirming", "finished"]
    )
    assert await order_status(conn, order_id) == "paid"
    cur = await conn.execute(
        "SELECT task_name, status, queue_name, lock, args->>'order_id' FROM procrastinate_jobs"
        " ORDER BY id"
    )
    # The fulfillment job, and the receipt's email job (queued in the same transaction).
    assert await cur.fetchall() == [
        ("fulfill_order", "todo", "fulfillment", f"order:{order_id}", str(order_id)),
        ("send_delivery_email", "todo", "email", None, None),
    ]
    cur = await conn.execute(
        "SELECT kind, details FROM email_outbox WHERE order_id = %s", (order_id,)
    )
    assert await cur.fetchall() == [("payment_received", {"amount": "14.99", "paid": ANY})]
    cur = await conn.execute(
        "SELECT to_status, actor FROM order_events WHERE order_id = %s ORDER BY id", (order_id,)
    )
    assert await cur.fetchall() == [
        ("created", "guest"),
        ("waiting", "api"),
        ("confirming", "nowpayments"),
        ("paid", "nowpayments"),
    ]


async def test_each_verified_ipn_is_stored_once_with_its_outcome(
    api: Served, sim: Served, conn: Any, http: aiohttp.ClientSession
) -> None:
    order_id, result = await paid_order(
        http, api, sim, conn, statuses=["waiting", "confirming", "finished"]
    )
    cur = await conn.execute(
        "SELECT event_type, outcome, signature_variant, order_id, raw_body"
        " FROM webhook_events ORDER BY id"
    )
    rows = await cur.fetchall()
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("waiting", "payment_waiting", "utf8-lists", order_id),
        ("confirming", "order_confirming", "utf8-lists", order_id),
        ("finished", "order_paid", "utf8-lists", order_id),
    ]
    assert [r[4] for r in rows] == [d["body"] for d in result["deliveries"]]


async def test_ipn_for_an_order_still_created_moves_it_through_waiting(
    api: Served, conn: Any, http: aiohttp.ClientSession
) -> None:
    # The invoice was made but its answer was lost: the order never left `created`.
    await seed_product(conn)
    order_id = await scalar(
        conn,
        "INSERT INTO orders (email, currency, total_amount) VALUES ('ada@example.com', 'eur', %s)"
        " RETURNING id",
        PRICE,
    )
    raw, signature = signed(ipn_for(order_id))
    assert (await post_ipn(http, api.url, raw, signature))[0] == 200
    assert await order_trail(conn, order_id) == ["created", "waiting", "paid"]
    assert await fulfillment_jobs(conn, order_id) == 1


# --- duplicates and reordering ------------------------------------------------------------


async def test_same_ipn_posted_20_times_concurrently_gives_one_job_and_one_event(
    api: Served, conn: Any, http: aiohttp.ClientSession
) -> None:
    order_id = await create_order(http, api.url, conn)
    raw, signature = signed(ipn_for(order_id))
    answers = await asyncio.gather(*(post_ipn(http, api.url, raw, signature) for _ in range(20)))
    assert [status for status, _, _ in answers] == [200] * 20
    assert sorted(body["status"] for _, _, body in answers) == ["accepted"] + ["duplicate"] * 19
    assert await scalar(conn, "SELECT count(*) FROM webhook_events") == 1
    assert await fulfillment_jobs(conn) == 1
    assert await order_status(conn, order_id) == "paid"


async def test_late_confirming_after_finished_leaves_the_order_paid(
    api: Served, sim: Served, conn: Any, http: aiohttp.ClientSession
) -> None:
    order_id, _ = await paid_order(
        http, api, sim, conn, statuses=["confirming", "finished"], faults={"reorder": True}
    )
    assert await arrivals(conn) == ["finished", "confirming"]
    assert await order_status(conn, order_id) == "paid"
    assert await fulfillment_jobs(conn) == 1
    assert await scalar(conn, "SELECT status FROM payments") == "finished"
    assert await order_trail(conn, order_id) == ["created", "waiting", "paid"]


async def test_duplicated_and_reordered_sim_ipns_give_one_job(
    api: Served, sim: Served, conn: Any, http: aiohttp.ClientSession
) -> None:
    order_id, result = await paid_order(
        http, api, sim, conn, faults={"duplicate": 3, "reorder": True}
    )
    assert len(result["deliveries"]) == 5 * 4  # five statuses, each sent four times
    assert (await arrivals(conn))[0] == "finished"
    assert await scalar(conn, "SELECT count(*) FROM webhook_events") == 5
    assert await order_status(conn, order_id) == "paid"
    assert await fulfillment_jobs(conn) == 1


# --- payments that do not pay ---------------------------------------------------------------

# (plan for the simulator, final order status, part of its reason, flagged for admins)
UNPAID = {
    "partially_paid": (
        {"statuses": ["waiting", "partially_paid"]},
        "underpaid",
        "paid 7.50 of 14.99 eur",
        True,
    ),
    "short finished": (
        {"statuses": ["waiting", "confirming", "finished"], "actually_paid": btc("12.00")},
        "underpaid",
        "paid 12.00 of 14.99 eur",
        True,
    ),
    "wrong currency": (
        {"statuses": ["waiting", "confirming", "finished"], "price_currency": "usd"},
        "failed",
        "paid in usd, order is in eur",
        True,
    ),
    "expired": ({"statuses": ["waiting", "expired"]}, "expired", " expired", False),
    "failed": ({"statuses": ["waiting", "confirming", "failed"]}, "failed", " failed", False),
    "refunded": (
        {"statuses": ["waiting", "confirming", "refunded"]},
        "refunded",
        " refunded",
        True,
    ),
}


async def test_unpaid_outcomes_end_in_their_state_without_a_job(
    api: Served, sim: Served, conn: Any, http: aiohttp.ClientSession
) -> None:
    # One order per case in one database: a fresh database per case costs too much time.
    for case, (plan, final, reason, attention) in UNPAID.items():
        order_id, _ = await paid_order(http, api, sim, conn, **plan)
        cur = await conn.execute(
            "SELECT status, status_reason FROM orders WHERE id = %s", (order_id,)
        )
        status, status_reason = await cur.fetchone()
        assert (status, reason in status_reason) == (final, True), case
        assert await fulfillment_jobs(conn, order_id) == 0, case
        last_event = (
            "SELECT needs_attention FROM webhook_events WHERE order_id = %s"
            " ORDER BY id DESC LIMIT 1"
        )
        assert await scalar(conn, last_event, order_id) is attention, case
    assert await fulfillment_jobs(conn) == 0


async def test_refund_moves_a_paid_or_underpaid_order_to_refunded(
    api: Served, sim: Served, conn: Any, http: aiohttp.ClientSession
) -> None:
    paid, _ = await paid_order(http, api, sim, conn, statuses=["finished", "refunded"])
    underpaid, _ = await paid_order(http, api, sim, conn, statuses=["partially_paid", "refunded"])
    assert await order_trail(conn, paid) == ["created", "waiting", "paid", "refunded"]
    assert await order_trail(conn, underpaid) == ["created", "waiting", "underpaid", "refunded"]
    # The paid order's job was queued when it was paid (the job checks the status).
    assert (await fulfillment_jobs(conn, paid), await fulfillment_jobs(conn, underpaid)) == (1, 0)


# --- re-deposits ---------------------------------------------------------------------------


async def test_redeposit_is_its_own_payment_and_never_a_second_job(
    api: Served, sim: Served, conn: Any, http: aiohttp.ClientSession
) -> None:
    order_id, result = await paid_order(
        http,
        api,
        sim,
        conn,
        statuses=["confirming", "finished"],
        faults={"redeposit": {"status": "finished"}},
    )
    parent = str(result["payment_id"])
    cur = await conn.execute(
        "SELECT payment_id, parent_payment_id, order_id, status FROM payments"
        " ORDER BY payment_id::bigint"
    )
    rows = await cur.fetchall()
    assert len(rows) == 2
    assert rows[0] == (parent, None, order_id, "finished")
    child_id, child_parent, child_order, child_status = rows[1]
    assert child_id != parent
    assert (child_parent, child_order, child_status) == (parent, order_id, "finished")
    assert await order_status(conn, order_id) == "paid"
    assert await fulfillment_jobs(conn) == 1


# --- awkward but valid IPNs ------------------------------------------------------------------


async def test_awkward_but_valid_ipns_are_accepted_end_to_end(
    api: Served, sim: Served, conn: Any, http: aiohttp.ClientSession
) -> None:
    faults = {"tiny_amounts": True, "non_ascii": True, "fee_object": True, "extra_ids": True}
    order_id, _ = await paid_order(
        http, api, sim, conn, statuses=["waiting", "finished"], faults=faults
    )
    assert await order_status(conn, order_id) == "paid"
    assert await fulfillment_jobs(conn) == 1
    raw = await scalar(conn, "SELECT raw_body FROM webhook_events ORDER BY id DESC LIMIT 1")
    for stored_verbatim in (
        '"pay_amount":0.0000635',
        "Clé «Édition Spéciale» für Spieler 🎮",
        '"fee":{"currency":"btc"',
        '"payment_extra_ids":[',
    ):
        assert stored_verbatim in raw
    cur = await conn.execute("SELECT pay_amount, actually_paid FROM payments")
    assert await cur.fetchall() == [(Decimal("0.0000635"), Decimal("0.0000635"))]


# --- settings -------------------------------------------------------------------------------


async def test_confirmed_does_not_release_by_default(
    api: Served, sim: Served, conn: Any, http: aiohttp.ClientSession
) -> None:
    order_id, _ = await paid_order(
        http, api, sim, conn, statuses=["waiting", "confirming", "confirmed", "sending"]
    )
    assert await order_status(conn, order_id) == "confirming"
    assert await fulfillment_jobs(conn) == 0


async def test_paid_on_confirmed_releases_on_confirmed_and_queues_one_job(
    serve_api: Callable[..., Any], sim: Served, conn: Any, http: aiohttp.ClientSession
) -> None:
    api = await serve_api(paid_on="confirmed")
    order_id, _ = await paid_order(http, api, sim, conn)  # waiting ... confirmed ... finished
    cur = await conn.execute("SELECT event_type, outcome FROM webhook_events ORDER BY id")
    assert await cur.fetchall() == [
        ("waiting", "payment_waiting"),
        ("confirming", "order_confirming"),
        ("confirmed", "order_paid"),
        ("sending", "order_already_paid"),
        ("finished", "order_already_paid"),
    ]
    assert await fulfillment_jobs(conn, order_id) == 1


async def test_payment_tolerance_decides_a_slightly_short_payment(
    serve_api: Callable[..., Any], sim: Served, conn: Any, http: aiohttp.ClientSession
) -> None:
    api = await serve_api(payment_tolerance="0.50")
    within, _ = await paid_order(
        http, api, sim, conn, statuses=["finished"], actually_paid=btc(str(PRICE - Decimal("0.30")))
    )
    beyond, _ = await paid_order(
        http, api, sim, conn, statuses=["finished"], actually_paid=btc(str(PRICE - Decimal("0.80")))
    )
    assert (await order_status(conn, within), await fulfillment_jobs(conn, within)) == ("paid", 1)
    assert (await order_status(conn, beyond), await fulfillment_jobs(conn, beyond)) == (
        "underpaid",
        0,
    )
