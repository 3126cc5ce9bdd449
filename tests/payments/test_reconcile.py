"""The reconciler (`payments.service.reconcile`), one pass at a time, on a real database and
the in-process NOWPayments simulator: paid orders whose job was lost are queued again once,
payments whose IPNs were lost are read back from the API and applied like IPNs, and orders
nobody paid expire. Times are moved back with SQL, never waited for."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from decimal import Decimal
from typing import Any

import aiohttp
import psycopg
import pytest
from harness import COVERING_PAYMENT, Served
from ipn_support import PRICE, order_trail, scalar

from bitloot.config import Settings
from bitloot.fulfillment.service import NO_EVIDENCE, defer_fulfillment, fulfillment_lock
from bitloot.nowpayments.models import Ipn, PaymentStatus
from bitloot.nowpayments.signature import parse_ipn_json
from bitloot.payments import service as payments_service
from bitloot.payments.service import apply_ipn, reconcile
from bitloot.resources import Resources, open_resources
from bitloot.sim.app import SimConfig

Conn = psycopg.AsyncConnection[Any]

# The path of legal moves (order_status_transitions) from `created` to each status.
PATHS = {
    "created": [],
    "waiting": ["waiting"],
    "confirming": ["waiting", "confirming"],
    "paid": ["waiting", "paid"],
}


@pytest.fixture
async def res(make_settings: Callable[..., Settings]) -> AsyncIterator[Resources]:
    """What `bitloot worker` opens (pool, storage, NOWPayments client) for this test."""
    async with AsyncExitStack() as stack:
        resources = await open_resources(make_settings(), stack, pool_size=4)
        assert resources.nowpayments is not None  # the reconciler's second source
        yield resources


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def new_order(conn: Conn, status: str, total: Decimal = PRICE) -> uuid.UUID:
    """An order moved to `status` through legal transitions only (the trigger checks)."""
    cur = await conn.execute(
        "INSERT INTO orders (email, currency, total_amount)"
        " VALUES ('ada@example.com', 'eur', %s) RETURNING id",
        (total,),
    )
    row = await cur.fetchone()
    assert row is not None
    order_id: uuid.UUID = row[0]
    for step in PATHS[status]:
        if step == "paid":
            await conn.execute(COVERING_PAYMENT, (order_id,))
        await conn.execute("UPDATE orders SET status = %s WHERE id = %s", (step, order_id))
    return order_id


async def jobs_of(conn: Conn, order_id: uuid.UUID) -> list[tuple[str, str, str, str | None]]:
    """(status, task, queue, order_id arg) of every job under the order's lock."""
    cur = await conn.execute(
        "SELECT status::text, task_name, queue_name, args->>'order_id'"
        " FROM procrastinate_jobs WHERE lock = %s ORDER BY id",
        (fulfillment_lock(order_id),),
    )
    return [(row[0], row[1], row[2], row[3]) for row in await cur.fetchall()]


# --- 1. paid orders whose fulfillment job was lost ----------------------------------------


async def test_a_stuck_paid_order_is_requeued_exactly_once(res: Resources, conn: Conn) -> None:
    minutes = res.settings.reconcile_after_minutes
    backdate = "UPDATE orders SET paid_at = now() - make_interval(mins => %s) WHERE id = %s"

    stuck = await new_order(conn, "paid")  # paid, then its job was lost
    await conn.execute(backdate, (minutes + 1, stuck))
    young = await new_order(conn, "paid")  # paid just now: its job may simply be on its way
    await conn.execute(backdate, (minutes - 1, young))
    queued = await new_order(conn, "paid")  # stuck as long, but a job is waiting for it
    await conn.execute(backdate, (minutes + 5, queued))
    async with conn.transaction():
        await defer_fulfillment(conn, queued)
    running = await new_order(conn, "paid")  # stuck as long, but a worker is on it
    await conn.execute(backdate, (minutes + 5, running))
    async with conn.transaction():
        await defer_fulfillment(conn, running)
    await conn.execute(
        "UPDATE procrastinate_jobs SET status = 'doing' WHERE lock = %s",
        (fulfillment_lock(running),),
    )
    failed_job = await new_order(conn, "paid")  # its only job ended failed: nothing will run
    await conn.execute(backdate, (minutes + 5, failed_job))
    async with conn.transaction():
        await defer_fulfillment(conn, failed_job)
    for status in ("doing", "failed"):
        await conn.execute(
            "UPDATE procrastinate_jobs SET status = %s WHERE lock = %s",
            (status, fulfillment_lock(failed_job)),
        )

    assert await reconcile(res) == {"requeued": 2, "expired": 0, "payments_rechecked": 0}
    one_job = [("todo", "fulfill_order", "fulfillment", str(stuck))]
    assert await jobs_of(conn, stuck) == one_job
    assert await jobs_of(conn, failed_job) == [
        ("failed", "fulfill_order", "fulfillment", str(failed_job)),
        ("todo", "fulfill_order", "fulfillment", str(failed_job)),
    ]
    assert await jobs_of(conn, young) == []
    assert await jobs_of(conn, queued) == [("todo", "fulfill_order", "fulfillment", str(queued))]
    assert await jobs_of(conn, running) == [("doing", "fulfill_order", "fulfillment", str(running))]

    # The next pass, the job still waiting: nothing more is queued for anyone.
    assert await reconcile(res) == {"requeued": 0, "expired": 0, "payments_rechecked": 0}
    assert await jobs_of(conn, stuck) == one_job
    assert len(await jobs_of(conn, failed_job)) == 2
    assert await scalar(conn, "SELECT count(*) FROM procrastinate_jobs") == 5
    # Requeueing is no status change: the orders are as they were.
    for order_id in (stuck, young, queued, running, failed_job):
        assert await order_trail(conn, order_id) == ["created", "waiting", "paid"]


async def test_a_stuck_order_nothing_proves_paid_is_failed_not_requeued(
    res: Resources, conn: Conn
) -> None:
    """The reconciler asks bitloot_payment_evidence too: a paid order whose payment was
    refunded since is not sent to Kinguin again; its fulfillment fails, saying why."""
    minutes = res.settings.reconcile_after_minutes
    order_id = await new_order(conn, "paid")
    await conn.execute(
        "UPDATE orders SET paid_at = now() - make_interval(mins => %s) WHERE id = %s",
        (minutes + 1, order_id),
    )
    await conn.execute("UPDATE payments SET status = 'refunded' WHERE order_id = %s", (order_id,))

    assert (await reconcile(res))["requeued"] == 0
    assert await jobs_of(conn, order_id) == []
    cur = await conn.execute(
        "SELECT fulfillment_status, fulfillment_error FROM orders WHERE id = %s", (order_id,)
    )
    assert await cur.fetchone() == ("failed", NO_EVIDENCE)
    cur = await conn.execute(
        "SELECT actor, reason FROM order_events WHERE order_id = %s AND machine = 'fulfillment'",
        (order_id,),
    )
    assert await cur.fetchall() == [("reconciler", NO_EVIDENCE)]


async def test_fulfilled_or_failed_orders_are_never_requeued(res: Resources, conn: Conn) -> None:
    fulfilled_failed = await new_order(conn, "paid")
    await conn.execute(
        "UPDATE orders SET fulfillment_status = 'failed', fulfillment_error = 'Kinguin said no',"
        " paid_at = now() - interval '1 day' WHERE id = %s",
        (fulfilled_failed,),
    )
    refunded = await new_order(conn, "paid")
    await conn.execute(
        "UPDATE orders SET status = 'refunded', paid_at = now() - interval '1 day' WHERE id = %s",
        (refunded,),
    )

    assert (await reconcile(res))["requeued"] == 0
    assert await scalar(conn, "SELECT count(*) FROM procrastinate_jobs") == 0


# --- 2. payments whose IPNs were lost ------------------------------------------------------


async def sim_payment(
    http: aiohttp.ClientSession, sim: Served, api_port: int, order_id: uuid.UUID
) -> str:
    """A payment of the order at the simulator (`POST /v1/payment`), in `waiting`; its IPNs
    go to the test's API port, where nothing listens: every IPN is lost."""
    body = {
        "price_amount": str(PRICE),
        "price_currency": "eur",
        "pay_currency": "btc",
        "order_id": str(order_id),
        "order_description": f"BitLoot order {order_id}",
        "ipn_callback_url": f"http://127.0.0.1:{api_port}/webhooks/nowpayments",
    }
    headers = {"x-api-key": SimConfig().nowpayments_api_key}
    async with http.post(f"{sim.url}/nowpayments/v1/payment", json=body, headers=headers) as r:
        data = await r.json()
    assert r.status == 201, data
    return str(data["payment_id"])


async def drive(http: aiohttp.ClientSession, sim: Served, payment_id: str, *statuses: str) -> None:
    """Move the simulator's payment through `statuses`; check its IPNs all went nowhere."""
    url = f"{sim.url}/nowpayments/sim/payments/{payment_id}/drive"
    plan = {"statuses": list(statuses), "wait": True, "interval_ms": 0, "retry_delays_ms": []}
    async with http.post(url, json=plan) as resp:
        data = await resp.json()
    assert resp.status == 201, data
    assert data["done"] and len(data["deliveries"]) == len(statuses), data
    assert not any(d["delivered"] for d in data["deliveries"]), data


async def lost_ipns(http: aiohttp.ClientSession, sim: Served, payment_id: str) -> list[str]:
    """The bodies of the IPNs the simulator sent for the payment, oldest first."""
    async with http.get(f"{sim.url}/nowpayments/sim/ipns") as resp:
        items = (await resp.json())["items"]
    return [i["body"] for i in items if str(i["payment_id"]) == payment_id]


async def known_payment(
    conn: Conn, payment_id: str, order_id: uuid.UUID, status: str, age: str
) -> None:
    """The payment as BitLoot last heard of it (`age` ago): an insert, because the
    payments_touch trigger sets updated_at to now() on every UPDATE."""
    await conn.execute(
        "INSERT INTO payments (payment_id, order_id, status, price_amount, price_currency,"
        " pay_currency, last_ipn_at, created_at, updated_at)"
        " VALUES (%s, %s, %s, %s, 'eur', 'btc', now() - %s::interval,"
        " now() - %s::interval, now() - %s::interval)",
        (payment_id, order_id, status, PRICE, age, age, age),
    )


async def payment_row(conn: Conn, payment_id: str) -> tuple[str, bool]:
    """(status, whether updated_at is within the last minute)."""
    cur = await conn.execute(
        "SELECT status, updated_at > now() - interval '1 minute' FROM payments"
        " WHERE payment_id = %s",
        (payment_id,),
    )
    row = await cur.fetchone()
    assert row is not None
    return row[0], row[1]


async def fulfill_jobs(conn: Conn, order_id: uuid.UUID) -> int:
    return int(
        await scalar(
            conn,
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'fulfill_order'"
            " AND lock = %s AND args->>'order_id' = %s",
            fulfillment_lock(order_id),
            str(order_id),
        )
    )


@pytest.mark.parametrize("last_heard", ["waiting", "confirming"])
async def test_a_payment_finished_at_nowpayments_pays_the_order(
    res: Resources,
    conn: Conn,
    http: aiohttp.ClientSession,
    sim: Served,
    api_port: int,
    last_heard: str,
) -> None:
    order_id = await new_order(conn, last_heard)
    payment_id = await sim_payment(http, sim, api_port, order_id)
    await known_payment(conn, payment_id, order_id, last_heard, "1 hour")
    await drive(http, sim, payment_id, "waiting", "confirming", "confirmed", "finished")

    assert await reconcile(res) == {"requeued": 0, "expired": 0, "payments_rechecked": 1}

    assert await order_trail(conn, order_id) == ["created", *PATHS[last_heard], "paid"]
    assert await fulfill_jobs(conn, order_id) == 1
    assert await payment_row(conn, payment_id) == ("finished", True)
    cur = await conn.execute(
        "SELECT provider, event_type, signature_variant, outcome, needs_attention, order_id,"
        " raw_body::jsonb->>'payment_status' FROM webhook_events WHERE external_id = %s",
        (payment_id,),
    )
    assert await cur.fetchall() == [
        ("nowpayments", "finished", "api", "order_paid", False, order_id, "finished")
    ]
    actors = await conn.execute(
        "SELECT actor, reason FROM order_events WHERE order_id = %s AND to_status = 'paid'",
        (order_id,),
    )
    assert await actors.fetchall() == [("reconciler", f"payment {payment_id} finished")]

    # The IPNs that were lost arrive after all: the `finished` one is the report already
    # applied (a duplicate), the earlier ones are behind the payment; nothing moves.
    outcomes = []
    for body in await lost_ipns(http, sim, payment_id):
        ipn = Ipn.from_parsed(parse_ipn_json(body.encode()))
        async with res.pool.connection() as c, c.transaction():
            result = await apply_ipn(c, ipn, raw_body=body, signature_variant="sorted")
        outcomes.append((ipn.payment_status, result.duplicate, result.outcome))
    assert outcomes == [
        ("waiting", False, "stale"),
        ("confirming", False, "stale"),
        ("confirmed", False, "stale"),
        ("finished", True, "duplicate"),
    ]
    assert await order_trail(conn, order_id) == ["created", *PATHS[last_heard], "paid"]
    assert await fulfill_jobs(conn, order_id) == 1
    assert await payment_row(conn, payment_id) == ("finished", True)

    # Final now, and just checked: the next pass asks NOWPayments nothing.
    assert (await reconcile(res))["payments_rechecked"] == 0


async def test_recently_heard_of_payments_are_not_asked_about(
    res: Resources, conn: Conn, http: aiohttp.ClientSession, sim: Served, api_port: int
) -> None:
    order_id = await new_order(conn, "waiting")
    payment_id = await sim_payment(http, sim, api_port, order_id)
    minutes = res.settings.reconcile_after_minutes
    await known_payment(conn, payment_id, order_id, "waiting", f"{minutes - 1} minutes")
    await drive(http, sim, payment_id, "finished")

    assert (await reconcile(res))["payments_rechecked"] == 0
    assert await order_trail(conn, order_id) == ["created", "waiting"]
    assert (await payment_row(conn, payment_id))[0] == "waiting"
    assert await scalar(conn, "SELECT count(*) FROM webhook_events") == 0
    assert await fulfill_jobs(conn, order_id) == 0


async def test_an_error_from_nowpayments_skips_to_the_next_payment(
    res: Resources, conn: Conn, http: aiohttp.ClientSession, sim: Served, api_port: int
) -> None:
    # Oldest first: the payment NOWPayments does not know (404) is asked about first.
    unknown_order = await new_order(conn, "waiting")
    await known_payment(conn, "4999999999", unknown_order, "waiting", "2 hours")
    order_id = await new_order(conn, "confirming")
    payment_id = await sim_payment(http, sim, api_port, order_id)
    await known_payment(conn, payment_id, order_id, "confirming", "1 hour")
    await drive(http, sim, payment_id, "confirming", "finished")

    assert (await reconcile(res))["payments_rechecked"] == 2

    assert await order_trail(conn, order_id) == ["created", "waiting", "confirming", "paid"]
    assert await fulfill_jobs(conn, order_id) == 1
    # The failed check changed nothing and stored nothing, but the payment was touched:
    # it waits a period before it is asked again, instead of heading every batch.
    assert await payment_row(conn, "4999999999") == ("waiting", True)
    assert await order_trail(conn, unknown_order) == ["created", "waiting"]
    assert (
        await scalar(conn, "SELECT count(*) FROM webhook_events WHERE external_id = '4999999999'")
        == 0
    )
    assert (await reconcile(res))["payments_rechecked"] == 0


async def test_payments_nowpayments_keeps_refusing_do_not_starve_the_others(
    res: Resources,
    conn: Conn,
    http: aiohttp.ClientSession,
    sim: Served,
    api_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(payments_service, "BATCH", 1)  # one refusing payment fills a batch
    unknown_order = await new_order(conn, "waiting")
    await known_payment(conn, "4999999999", unknown_order, "waiting", "2 hours")
    order_id = await new_order(conn, "waiting")
    payment_id = await sim_payment(http, sim, api_port, order_id)
    await known_payment(conn, payment_id, order_id, "waiting", "1 hour")
    await drive(http, sim, payment_id, "finished")

    for _ in range(3):
        await reconcile(res)

    assert await order_trail(conn, order_id) == ["created", "waiting", "paid"]


async def test_an_answer_with_a_negative_amount_is_refused_like_such_an_ipn(
    res: Resources,
    conn: Conn,
    http: aiohttp.ClientSession,
    sim: Served,
    api_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    order_id = await new_order(conn, "waiting")
    payment_id = await sim_payment(http, sim, api_port, order_id)
    await known_payment(conn, payment_id, order_id, "waiting", "1 hour")
    await drive(http, sim, payment_id, "finished")
    client = res.nowpayments_client
    get_payment = client.get_payment

    async def negative(payment_id: str) -> PaymentStatus:
        answer = await get_payment(payment_id)
        assert answer.pay_amount is not None
        return answer.model_copy(update={"actually_paid": -answer.pay_amount})

    monkeypatch.setattr(client, "get_payment", negative)
    assert (await reconcile(res))["payments_rechecked"] == 1
    # Nothing applied, nothing stored; touched, so it waits a period like a refused check.
    assert await order_trail(conn, order_id) == ["created", "waiting"]
    assert await payment_row(conn, payment_id) == ("waiting", True)
    assert await scalar(conn, "SELECT count(*) FROM webhook_events") == 0
    assert await fulfill_jobs(conn, order_id) == 0


# --- 3. orders nobody paid -----------------------------------------------------------------


async def test_abandoned_orders_expire_and_the_change_is_recorded(
    res: Resources, conn: Conn
) -> None:
    async def order(status: str, age: str) -> uuid.UUID:
        order_id = await new_order(conn, status)
        await conn.execute(
            "UPDATE orders SET created_at = now() - %s::interval WHERE id = %s", (age, order_id)
        )
        return order_id

    never_invoiced = await order("created", "25 hours")
    invoice_pending = await order("created", "23 hours")  # POST /orders may still resume it
    never_paid = await order("waiting", "8 days 1 hour")
    may_still_pay = await order("waiting", "7 days 23 hours")
    paying = await order("waiting", "9 days")  # a payment exists: NOWPayments decides
    await known_payment(conn, "5000000001", paying, "waiting", "1 minute")
    confirming = await order("confirming", "9 days")
    paid = await order("paid", "30 days")

    result = await reconcile(res)
    assert (result["expired"], result["requeued"]) == (2, 0)

    cur = await conn.execute(
        "SELECT id, status, status_reason FROM orders WHERE status = 'expired' ORDER BY id"
    )
    assert await cur.fetchall() == sorted(
        (oid, "expired", "no payment arrived in time") for oid in (never_invoiced, never_paid)
    )
    cur = await conn.execute(
        "SELECT order_id, from_status, to_status, actor FROM order_events"
        " WHERE to_status = 'expired' ORDER BY order_id"
    )
    assert await cur.fetchall() == sorted(
        [
            (never_invoiced, "created", "expired", "reconciler"),
            (never_paid, "waiting", "expired", "reconciler"),
        ]
    )
    for order_id, trail in [
        (invoice_pending, ["created"]),
        (may_still_pay, ["created", "waiting"]),
        (paying, ["created", "waiting"]),
        (confirming, ["created", "waiting", "confirming"]),
        (paid, ["created", "waiting", "paid"]),
    ]:
        assert await order_trail(conn, order_id) == trail

    # Expired is final: the next pass finds nothing more.
    assert (await reconcile(res))["expired"] == 0
    assert await scalar(conn, "SELECT count(*) FROM order_events WHERE to_status = 'expired'") == 2
