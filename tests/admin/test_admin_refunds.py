"""`POST /admin/orders/{id}/refund` over HTTP against the real API, PostgreSQL and the Kinguin
simulator: one transaction that refunds, revokes, notifies and queues the key return; the
key-return job run by a worker; every refusal a clear problem that writes nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from admin_support import ADMIN_SUB, Tokens, request, side_effects
from settlement_support import (
    Conn,
    SimControl,
    fulfilled_order,
    paid_order,
    rows,
    run_jobs,
    scalar,
    underpaid_order,
    waiting_order,
)

from bitloot.auth.order_tokens import mint_order_token
from bitloot.fulfillment.returns import RETURN_TASK
from bitloot.fulfillment.service import expire_keys
from bitloot.queue import queue_app
from bitloot.resources import Resources

REASON = "customer asked within the withdrawal period"
REFERENCE = "NP-PAYOUT-4411"


@pytest.fixture
async def sim_ctl(sim: Any, http: aiohttp.ClientSession) -> AsyncIterator[SimControl]:
    yield SimControl(sim.url, http)


def _url(api: Any, order_id: uuid.UUID | str, action: str = "refund") -> str:
    return f"{api.url}/admin/orders/{order_id}/{action}"


async def _refund(
    http: aiohttp.ClientSession, api: Any, tokens: Tokens, order_id: uuid.UUID, **body: Any
) -> tuple[int, Any]:
    payload = {"reason": REASON, "reference": REFERENCE} | body
    return await request(http, "POST", _url(api, order_id), headers=tokens.admin, json=payload)


async def _return_rows(conn: Conn, order_id: uuid.UUID) -> list[tuple[Any, ...]]:
    return await rows(
        conn,
        "SELECT outcome, detail, key_statuses FROM kinguin_key_returns WHERE order_id = %s"
        " ORDER BY id",
        order_id,
    )


async def _return_calls(conn: Conn, order_id: uuid.UUID) -> int:
    return int(
        await scalar(
            conn,
            "SELECT count(*) FROM kinguin_calls WHERE order_id = %s AND endpoint = 'return_keys'",
            order_id,
        )
    )


async def test_refund_of_a_fulfilled_order_revokes_notifies_and_returns_the_keys(
    api: Any,
    conn: Conn,
    http: aiohttp.ClientSession,
    tokens: Tokens,
    runtime: Resources,
    sim_ctl: SimControl,
) -> None:
    order_id = await fulfilled_order(conn, runtime)
    customer_token = await mint_order_token(runtime.pool, order_id, purpose="email")

    status, body = await _refund(http, api, tokens, order_id)

    assert status == 201, body
    assert body["amount"] == "19.99"  # a covering payment: the total
    assert (body["orderStatus"], body["currency"], body["reference"], body["adminId"]) == (
        "refunded", "eur", REFERENCE, ADMIN_SUB,
    )  # fmt: skip
    assert await rows(
        conn, "SELECT amount, currency, reference, reason, admin_id FROM refunds"
    ) == [(Decimal("19.99"), "eur", REFERENCE, REASON, ADMIN_SUB)]
    assert await scalar(conn, "SELECT status FROM orders WHERE id = %s", order_id) == "refunded"
    assert await rows(
        conn,
        "SELECT DISTINCT revoked_reason, revoked_at IS NOT NULL FROM key_delivery_logs"
        " WHERE order_id = %s",
        order_id,
    ) == [("refunded", True)]
    notices = await rows(
        conn,
        "SELECT details FROM email_outbox WHERE order_id = %s AND kind = 'refunded'",
        order_id,
    )
    assert notices == [({"amount": "19.99", "currency": "eur", "reference": REFERENCE},)]
    assert (
        await scalar(
            conn, "SELECT count(*) FROM procrastinate_jobs WHERE task_name = %s", RETURN_TASK
        )
        == 1
    )

    # download-link: the keys are gone for everyone; the customer's link does not open at all.
    admin_reply = await request(
        http, "GET", f"{api.url}/fulfillment/{order_id}/download-link", headers=tokens.admin
    )
    assert admin_reply[0] == 410, admin_reply
    async with http.get(
        f"{api.url}/fulfillment/{order_id}/download-link",
        headers={"Authorization": f"Bearer {customer_token}"},
    ) as resp:
        assert resp.status == 401
    assert (
        await scalar(conn, "SELECT count(*) FROM key_access_events WHERE order_id = %s", order_id)
        == 0
    )

    # The audit trail and the timeline, with the reason.
    assert await rows(
        conn,
        "SELECT admin_id, action, reason, details->>'reference' FROM admin_audit_log"
        " WHERE order_id = %s",
        order_id,
    ) == [(ADMIN_SUB, "order.refund", REASON, REFERENCE)]
    timeline = await rows(
        conn,
        "SELECT source, what, actor, reason FROM fulfillment_timeline WHERE order_id = %s",
        order_id,
    )
    assert ("admin", "order.refund", ADMIN_SUB, REASON) in timeline
    assert ("status", "order: fulfilled -> refunded", f"admin:{ADMIN_SUB}", REASON) in timeline
    assert any(source == "refund" and r == REASON for source, _, _, r in timeline)

    # A repeat is a 200 that changes nothing; another reference is a conflict.
    before = await side_effects(conn, order_id)
    status, again = await _refund(http, api, tokens, order_id)
    assert (status, again) == (200, body)
    status, clash = await _refund(http, api, tokens, order_id, reference="NP-OTHER")
    assert status == 409 and clash["type"].endswith("/refund-mismatch"), clash
    assert clash["refund"]["reference"] == REFERENCE
    status, clash = await _refund(http, api, tokens, order_id, amount="5.00")
    assert status == 409, clash
    assert await side_effects(conn, order_id) == before

    # The worker asks Kinguin to take the keys back, once.
    await run_jobs(runtime)
    outcomes = await _return_rows(conn, order_id)
    assert [o for o, _, _ in outcomes] == ["requested", "returned"]
    assert [k["status"] for k in outcomes[1][2]] == ["RETURNED"]
    assert await sim_ctl.key_statuses(order_id) == ["RETURNED"]
    assert await _return_calls(conn, order_id) == 1
    timeline = await rows(
        conn, "SELECT source, what FROM fulfillment_timeline WHERE order_id = %s", order_id
    )
    assert (
        sum(1 for s, w in timeline if s == "kinguin key return" and w.startswith("returned")) == 1
    )


async def test_a_duplicated_key_return_job_never_asks_kinguin_twice(
    api: Any, conn: Conn, http: aiohttp.ClientSession, tokens: Tokens, runtime: Resources
) -> None:
    order_id = await fulfilled_order(conn, runtime)
    assert (await _refund(http, api, tokens, order_id))[0] == 201
    # A second job for the same order (a replayed deferral), before and after the first ran.
    async with runtime.pool.connection() as c:
        await queue_app.configure_task(RETURN_TASK, connection=c).defer_async(
            order_id=str(order_id)
        )
    await run_jobs(runtime)
    async with runtime.pool.connection() as c:
        await queue_app.configure_task(RETURN_TASK, connection=c).defer_async(
            order_id=str(order_id)
        )
    await run_jobs(runtime)

    assert [o for o, _, _ in await _return_rows(conn, order_id)] == ["requested", "returned"]
    assert await _return_calls(conn, order_id) == 1
    assert await rows(
        conn,
        "SELECT DISTINCT status::text FROM procrastinate_jobs WHERE task_name = %s",
        RETURN_TASK,
    ) == [("succeeded",)]


async def test_a_kinguin_refusal_is_recorded_and_the_job_succeeds(
    api: Any,
    conn: Conn,
    http: aiohttp.ClientSession,
    tokens: Tokens,
    runtime: Resources,
    sim_ctl: SimControl,
) -> None:
    order_id = await fulfilled_order(conn, runtime)
    await sim_ctl.call(
        "POST",
        "/faults/errors",
        {
            "status": 400,
            "kind": "NoKeysToReturn",
            "detail": "The key has been claimed.",
            "endpoints": ["return_keys"],
        },
    )
    assert (await _refund(http, api, tokens, order_id))[0] == 201

    await run_jobs(runtime)

    outcomes = await _return_rows(conn, order_id)
    assert [o for o, _, _ in outcomes] == ["requested", "refused"]
    assert "NoKeysToReturn" in outcomes[1][1] and "claimed" in outcomes[1][1]
    assert [k["status"] for k in outcomes[1][2]] == ["DELIVERED"]  # read back, still sold
    assert await rows(
        conn, "SELECT status::text FROM procrastinate_jobs WHERE task_name = %s", RETURN_TASK
    ) == [("succeeded",)]
    assert await scalar(conn, "SELECT status FROM orders WHERE id = %s", order_id) == "refunded"


async def test_a_revealed_key_is_not_returned(
    api: Any, conn: Conn, http: aiohttp.ClientSession, tokens: Tokens, runtime: Resources
) -> None:
    order_id = await fulfilled_order(conn, runtime)
    token = await mint_order_token(runtime.pool, order_id)
    async with http.get(
        f"{api.url}/fulfillment/{order_id}/download-link",
        headers={"Authorization": f"Bearer {token}"},
    ) as resp:
        assert resp.status == 200
    assert (await _refund(http, api, tokens, order_id))[0] == 201

    await run_jobs(runtime)

    ((outcome, detail, _),) = await _return_rows(conn, order_id)
    assert outcome == "skipped" and "revealed" in detail
    assert await _return_calls(conn, order_id) == 0


async def test_a_queued_fulfillment_of_a_refunded_order_buys_nothing(
    api: Any,
    conn: Conn,
    http: aiohttp.ClientSession,
    tokens: Tokens,
    runtime: Resources,
    sim_ctl: SimControl,
) -> None:
    order_id = await paid_order(conn)
    async with runtime.pool.connection() as c:
        await queue_app.configure_task(
            "fulfill_order", connection=c, lock=f"order:{order_id}"
        ).defer_async(order_id=str(order_id))

    status, body = await _refund(http, api, tokens, order_id)
    assert status == 201, body
    await run_jobs(runtime)

    assert await sim_ctl.orders_for(order_id) == []
    assert await rows(
        conn, "SELECT status, fulfillment_status FROM orders WHERE id = %s", order_id
    ) == [("refunded", "pending")]
    ((outcome, detail, _),) = await _return_rows(conn, order_id)
    assert (outcome, detail) == ("skipped", "no Kinguin order was bought")
    assert await rows(
        conn,
        "SELECT task_name, status::text FROM procrastinate_jobs WHERE queue_name = 'fulfillment'"
        " ORDER BY id",
    ) == [("fulfill_order", "succeeded"), (RETURN_TASK, "succeeded")]


async def test_refund_of_an_underpaid_order_defaults_to_what_arrived(
    api: Any, conn: Conn, http: aiohttp.ClientSession, tokens: Tokens
) -> None:
    order_id = await underpaid_order(conn)  # half of the BTC due: 19.99 / 2 = 9.995

    status, body = await _refund(http, api, tokens, order_id)

    assert status == 201, body
    assert body["amount"] == "9.99"  # rounded down to the cent
    assert await scalar(conn, "SELECT status FROM orders WHERE id = %s", order_id) == "refunded"
    assert await rows(
        conn,
        "SELECT from_status, to_status, actor, reason FROM order_events"
        " WHERE order_id = %s ORDER BY id DESC LIMIT 1",
        order_id,
    ) == [("underpaid", "refunded", f"admin:{ADMIN_SUB}", REASON)]


async def test_a_given_amount_is_recorded(
    api: Any, conn: Conn, http: aiohttp.ClientSession, tokens: Tokens
) -> None:
    order_id = await paid_order(conn)
    status, body = await _refund(http, api, tokens, order_id, amount="12.50")
    assert (status, body["amount"]) == (201, "12.50"), body
    status, again = await _refund(http, api, tokens, order_id, amount=12.5)
    assert (status, again["refundId"]) == (200, body["refundId"])


@pytest.mark.parametrize(
    "amount", [0, "-1.00", "19.999", "20.00", "abc", "NaN"], ids=lambda a: f"amount={a}"
)
async def test_a_bad_amount_is_422_and_writes_nothing(
    api: Any, conn: Conn, http: aiohttp.ClientSession, tokens: Tokens, amount: Any
) -> None:
    order_id = await paid_order(conn)
    before = await side_effects(conn, order_id)
    status, body = await _refund(http, api, tokens, order_id, amount=amount)
    assert status == 422, body
    assert await side_effects(conn, order_id) == before
    assert await scalar(conn, "SELECT count(*) FROM refunds") == 0


async def test_an_underpaid_order_with_nothing_known_to_have_arrived_needs_an_amount(
    api: Any, conn: Conn, http: aiohttp.ClientSession, tokens: Tokens
) -> None:
    order_id = await underpaid_order(conn, paid_btc=None)
    status, body = await _refund(http, api, tokens, order_id)
    assert status == 422, body
    assert "give the amount" in body["errors"][0]["msg"]
    status, body = await _refund(http, api, tokens, order_id, amount="3.00")
    assert (status, body["amount"]) == (201, "3.00")


@pytest.mark.parametrize("state", ["created", "waiting"])
async def test_refund_is_refused_before_payment(
    api: Any, conn: Conn, http: aiohttp.ClientSession, tokens: Tokens, state: str
) -> None:
    order_id = await waiting_order(conn)
    if state == "created":
        cur = await conn.execute(
            "INSERT INTO orders (email, currency, total_amount) VALUES"
            " ('ada@example.com', 'eur', 5) RETURNING id"
        )
        row = await cur.fetchone()
        assert row is not None
        order_id = row[0]
    before = await side_effects(conn, order_id)
    status, body = await _refund(http, api, tokens, order_id)
    assert status == 409, body
    assert body["type"].endswith("/not-refundable")
    assert body["orderStatus"] == state
    assert await side_effects(conn, order_id) == before


async def test_refund_is_refused_while_a_purchase_may_be_in_flight(
    api: Any, conn: Conn, http: aiohttp.ClientSession, tokens: Tokens
) -> None:
    order_id = await paid_order(conn)
    await conn.execute(
        "UPDATE orders SET fulfillment_status = 'processing' WHERE id = %s", (order_id,)
    )
    before = await side_effects(conn, order_id)
    async with http.post(
        _url(api, order_id), headers=tokens.admin, json={"reason": REASON, "reference": REFERENCE}
    ) as resp:
        body = await resp.json(content_type=None)
        assert resp.status == 409, body
        assert int(resp.headers["Retry-After"]) > 0
    assert "retry" in body["detail"]
    assert (body["orderStatus"], body["fulfillmentStatus"]) == ("paid", "processing")
    assert await side_effects(conn, order_id) == before


async def test_a_missing_order_is_404(
    api: Any, http: aiohttp.ClientSession, tokens: Tokens
) -> None:
    status, body = await _refund(http, api, tokens, uuid.uuid4())
    assert status == 404, body


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/admin/orders/{id}/refund"),
        ("POST", "/admin/orders/{id}/accept-payment"),
        ("GET", "/admin/refunds-due"),
    ],
)
async def test_only_admins_may_settle(
    api: Any, conn: Conn, http: aiohttp.ClientSession, tokens: Tokens, method: str, path: str
) -> None:
    order_id = await underpaid_order(conn)
    url = api.url + path.format(id=order_id)
    body = {"reason": REASON, "reference": REFERENCE} if method == "POST" else None
    for headers, expected in [
        ({}, 401),
        (tokens.customer, 403),
        (await tokens.order(order_id), 403),
    ]:
        status, problem = await request(http, method, url, headers=headers, json=body)
        assert status == expected, (headers, problem)
    assert await scalar(conn, "SELECT status FROM orders WHERE id = %s", order_id) == "underpaid"


async def test_a_refunded_orders_objects_go_with_the_retention_rule(
    api: Any, conn: Conn, http: aiohttp.ClientSession, tokens: Tokens, runtime: Resources
) -> None:
    order_id = await fulfilled_order(conn, runtime)
    assert (await _refund(http, api, tokens, order_id))[0] == 201
    assert await expire_keys(runtime) == 0  # revoked, but kept until its retention ends
    await conn.execute(
        "UPDATE key_delivery_logs SET expires_at = now() - interval '1 second' WHERE order_id = %s",
        (order_id,),
    )
    assert await expire_keys(runtime) == 1
    assert await rows(
        conn, "SELECT status, revoked_reason FROM key_delivery_logs WHERE order_id = %s", order_id
    ) == [("deleted", "refunded")]
