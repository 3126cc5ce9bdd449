"""A final IPN pays an order only with the evidence of the amount (issue 13, item 4): the
price currency, the price, what was sent of what was due. Signed IPNs go through the real
API over HTTP, as NOWPayments sends them; the simulator's own IPNs carry that evidence."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from harness import Served
from ipn_support import (
    BTC_PER_EUR,
    PRICE,
    create_order,
    fulfillment_jobs,
    invoice_id,
    ipn_for,
    order_status,
    pay,
    post_ipn,
    scalar,
    signed,
    sim_ipns,
)

from bitloot.nowpayments.signature import RawNumber


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def without(body: dict[str, Any], *names: str) -> dict[str, Any]:
    """The IPN body with these fields left out altogether."""
    return {k: v for k, v in body.items() if k not in names}


async def last_event(conn: Any, order_id: uuid.UUID) -> tuple[str, bool]:
    """(outcome, needs_attention) of the order's last stored webhook."""
    cur = await conn.execute(
        "SELECT outcome, needs_attention FROM webhook_events WHERE order_id = %s"
        " ORDER BY id DESC LIMIT 1",
        (order_id,),
    )
    row = await cur.fetchone()
    assert row is not None
    return row[0], row[1]


# (what the finished IPN lacks, the body for an order, what the reason names)
UNPROVEN = {
    "no price_currency": (lambda o: without(ipn_for(o), "price_currency"), "no price_currency"),
    "null price_currency": (lambda o: ipn_for(o, price_currency=None), "no price_currency"),
    "no actually_paid": (lambda o: without(ipn_for(o), "actually_paid"), "no actually_paid"),
    "no pay_amount": (lambda o: without(ipn_for(o), "pay_amount"), "no pay_amount"),
    "no price_amount": (lambda o: without(ipn_for(o), "price_amount"), "no price_amount"),
    "pay_amount 0, a tiny actually_paid": (
        lambda o: ipn_for(o, pay_amount=RawNumber("0"), actually_paid=RawNumber("0.00000001")),
        "pay_amount 0",
    ),
    "nothing but the status": (
        lambda o: without(
            ipn_for(o),
            "price_amount",
            "price_currency",
            "pay_amount",
            "actually_paid",
            "actually_paid_at_fiat",
            "outcome_amount",
        ),
        "no price_currency",
    ),
}


async def test_finished_without_evidence_of_the_amount_is_underpaid_and_flagged(
    api: Served, conn: Any, http: aiohttp.ClientSession
) -> None:
    # One order per case in one database: a fresh database per case costs too much time.
    for number, (case, (body_for, named)) in enumerate(UNPROVEN.items()):
        order_id = await create_order(http, api.url, conn)
        body = body_for(order_id) | {"payment_id": RawNumber(str(5077130000 + number))}
        raw, signature = signed(body)
        status, _, answer = await post_ipn(http, api.url, raw, signature)
        assert (status, answer) == (200, {"status": "accepted", "outcome": "order_underpaid"}), case
        assert await order_status(conn, order_id) == "underpaid", case
        reason = await scalar(conn, "SELECT status_reason FROM orders WHERE id = %s", order_id)
        assert "proves no amount" in reason and named in reason, (case, reason)
        assert await last_event(conn, order_id) == ("order_underpaid", True), case
        assert await fulfillment_jobs(conn, order_id) == 0, case
    assert await fulfillment_jobs(conn) == 0


async def test_actually_paid_at_fiat_or_outcome_amount_do_not_stand_in_for_the_rest(
    api: Served, conn: Any, http: aiohttp.ClientSession
) -> None:
    # Both say "the full price" here, yet what was sent of what was due is not reported.
    order_id = await create_order(http, api.url, conn)
    body = without(ipn_for(order_id), "actually_paid")
    assert body["actually_paid_at_fiat"] == RawNumber(str(PRICE)) and body["outcome_amount"]
    raw, signature = signed(body)
    assert (await post_ipn(http, api.url, raw, signature))[0] == 200
    assert await order_status(conn, order_id) == "underpaid"
    assert await fulfillment_jobs(conn, order_id) == 0


async def test_partially_paid_then_a_short_finished_is_flagged_as_still_underpaid(
    api: Served, sim: Served, conn: Any, http: aiohttp.ClientSession
) -> None:
    order_id = await create_order(http, api.url, conn)
    # The simulator pays half for a plan with partially_paid, and reports it again finished.
    await pay(
        http, sim.url, await invoice_id(conn, order_id), statuses=["partially_paid", "finished"]
    )
    assert await order_status(conn, order_id) == "underpaid"
    cur = await conn.execute(
        "SELECT event_type, outcome, needs_attention FROM webhook_events WHERE order_id = %s"
        " ORDER BY id",
        (order_id,),
    )
    assert await cur.fetchall() == [
        ("partially_paid", "order_underpaid", True),
        ("finished", "still_underpaid", True),
    ]
    assert await fulfillment_jobs(conn) == 0
    # The customer is told once, in the transaction that moved the order: what arrived, in
    # the order's currency, and what is missing (the second report queues nothing).
    cur = await conn.execute(
        "SELECT kind, details FROM email_outbox WHERE order_id = %s", (order_id,)
    )
    ((kind, details),) = await cur.fetchall()
    assert kind == "underpaid"
    received, missing = Decimal(details["received"]), Decimal(details["missing"])
    assert received > 0 and missing > 0 and received + missing == PRICE
    assert details["paid"].endswith(" BTC")


async def test_partially_paid_then_a_full_finished_is_flagged_not_paid(
    api: Served, conn: Any, http: aiohttp.ClientSession
) -> None:
    order_id = await create_order(http, api.url, conn)
    half = RawNumber(str(PRICE * BTC_PER_EUR / 2))
    for body in (
        ipn_for(order_id, payment_status="partially_paid", actually_paid=half),
        ipn_for(order_id),
    ):
        raw, signature = signed(body)
        assert (await post_ipn(http, api.url, raw, signature))[0] == 200
    # Underpaid never becomes paid by itself: the customer topped up, a human releases.
    assert await order_status(conn, order_id) == "underpaid"
    assert await last_event(conn, order_id) == ("underpaid_now_covered", True)
    assert await fulfillment_jobs(conn) == 0


async def test_the_same_ipn_for_another_order_is_not_a_duplicate(
    api: Served, conn: Any, http: aiohttp.ClientSession
) -> None:
    paid = await create_order(http, api.url, conn)
    other = await create_order(http, api.url, conn)
    answers = []
    for order_id in (paid, other):  # same payment, status and amounts; another order_id
        raw, signature = signed(ipn_for(order_id))
        answers.append(await post_ipn(http, api.url, raw, signature))
    assert [(status, body) for status, _, body in answers] == [
        (200, {"status": "accepted", "outcome": "order_paid"}),
        (200, {"status": "accepted", "outcome": "payment_belongs_to_another_order"}),
    ]
    cur = await conn.execute(
        "SELECT order_id, outcome, needs_attention FROM webhook_events ORDER BY id"
    )
    assert await cur.fetchall() == [
        (paid, "order_paid", False),
        (other, "payment_belongs_to_another_order", True),
    ]
    assert (await order_status(conn, paid), await order_status(conn, other)) == ("paid", "waiting")
    assert (await fulfillment_jobs(conn, paid), await fulfillment_jobs(conn, other)) == (1, 0)


async def test_the_simulator_sends_the_evidence_a_payment_needs(
    api: Served, sim: Served, conn: Any, http: aiohttp.ClientSession
) -> None:
    order_id = await create_order(http, api.url, conn)
    await pay(http, sim.url, await invoice_id(conn, order_id), statuses=["waiting", "finished"])
    assert await order_status(conn, order_id) == "paid"
    finished = [json.loads(i["body"]) for i in await sim_ipns(http, sim.url)][-1]
    assert finished["payment_status"] == "finished"
    assert (finished["price_currency"], finished["price_amount"]) == ("eur", float(PRICE))
    assert finished["pay_amount"] > 0 and finished["actually_paid"] == finished["pay_amount"]
