"""`POST /admin/orders/{id}/accept-payment` and `GET /admin/refunds-due` over HTTP against the
real API and PostgreSQL; the accepted order fulfilled once by a worker against the Kinguin
simulator; and a payment within `BITLOOT_PAYMENT_TOLERANCE` still paid with no admin."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from admin_support import ADMIN_SUB, Tokens, request, side_effects
from harness import Served, serve_app
from settlement_support import (
    PRICE,
    Conn,
    SimControl,
    fulfilled_order,
    paid_order,
    rows,
    run_jobs,
    scalar,
    seed_product,
    underpaid_order,
    waiting_order,
)

from bitloot.auth.tokens import mint_user_token
from bitloot.config import Settings
from bitloot.resources import Resources
from bitloot.server import build_app
from bitloot.sim.kinguin_catalog import TEXT_PRODUCT_ID

REASON = "customer topped up the missing 10 EUR by bank transfer"


def _accept_url(api: Any, order_id: uuid.UUID) -> str:
    return f"{api.url}/admin/orders/{order_id}/accept-payment"


async def _fulfill_jobs(conn: Conn, order_id: uuid.UUID) -> int:
    return int(
        await scalar(
            conn,
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'fulfill_order'"
            " AND args->>'order_id' = %s",
            str(order_id),
        )
    )


async def test_accepting_an_underpaid_order_pays_it_and_it_is_fulfilled_once(
    api: Any,
    conn: Conn,
    http: aiohttp.ClientSession,
    tokens: Tokens,
    runtime: Resources,
    sim: Any,
) -> None:
    order_id = await underpaid_order(conn)

    status, body = await request(
        http, "POST", _accept_url(api, order_id), headers=tokens.admin, json={"reason": REASON}
    )

    assert status == 200, body
    assert (body["orderStatus"], body["fulfillmentStatus"], body["amountReceived"]) == (
        "paid", "pending", "9.99",
    )  # fmt: skip
    assert (body["adminId"], body["reason"]) == (ADMIN_SUB, REASON)
    assert await rows(
        conn, "SELECT admin_id, reason FROM payment_acceptances WHERE order_id = %s", order_id
    ) == [(ADMIN_SUB, REASON)]
    assert (
        await scalar(conn, "SELECT bitloot_payment_evidence(%s)", order_id)
        == f"acceptance {body['acceptanceId']}"
    )
    assert await _fulfill_jobs(conn, order_id) == 1
    assert await rows(
        conn,
        "SELECT details FROM email_outbox WHERE order_id = %s AND kind = 'payment_received'",
        order_id,
    ) == [({"amount": "9.99", "currency": "eur", "accepted": "true"},)]
    assert await rows(
        conn, "SELECT admin_id, action, reason FROM admin_audit_log WHERE order_id = %s", order_id
    ) == [(ADMIN_SUB, "payment.accept", REASON)]
    timeline = await rows(
        conn,
        "SELECT source, what, actor, reason FROM fulfillment_timeline WHERE order_id = %s",
        order_id,
    )
    assert ("admin", "payment.accept", ADMIN_SUB, REASON) in timeline
    assert ("status", "order: underpaid -> paid", f"admin:{ADMIN_SUB}", REASON) in timeline

    # A repeat answers the same acceptance and queues nothing more.
    before = await side_effects(conn, order_id)
    status, again = await request(
        http, "POST", _accept_url(api, order_id), headers=tokens.admin, json={"reason": "again"}
    )
    assert (status, again["acceptanceId"]) == (200, body["acceptanceId"])
    assert await side_effects(conn, order_id) == before

    await run_jobs(runtime)

    assert await rows(
        conn, "SELECT status, fulfillment_status FROM orders WHERE id = %s", order_id
    ) == [("fulfilled", "fulfilled")]
    async with aiohttp.ClientSession() as ctl:
        assert len(await SimControl(sim.url, ctl).orders_for(order_id)) == 1
    assert (
        await scalar(conn, "SELECT count(*) FROM key_delivery_logs WHERE order_id = %s", order_id)
        == 1
    )


@pytest.mark.parametrize("state", ["waiting", "paid", "refunded"])
async def test_only_an_underpaid_order_can_be_accepted(
    api: Any, conn: Conn, http: aiohttp.ClientSession, tokens: Tokens, state: str
) -> None:
    if state == "waiting":
        order_id = await waiting_order(conn)
    elif state == "paid":
        order_id = await paid_order(conn)  # paid by a payment, not an acceptance
    else:
        order_id = await underpaid_order(conn)
        await conn.execute("UPDATE orders SET status = 'refunded' WHERE id = %s", (order_id,))
    before = await side_effects(conn, order_id)
    status, body = await request(
        http, "POST", _accept_url(api, order_id), headers=tokens.admin, json={"reason": REASON}
    )
    assert status == 409, body
    assert body["type"].endswith("/not-underpaid")
    assert body["orderStatus"] == state
    assert await side_effects(conn, order_id) == before
    assert await scalar(conn, "SELECT count(*) FROM payment_acceptances") == 0


async def test_accept_needs_a_reason(
    api: Any, conn: Conn, http: aiohttp.ClientSession, tokens: Tokens
) -> None:
    order_id = await underpaid_order(conn)
    for body in [{}, {"reason": "  "}]:
        status, problem = await request(
            http, "POST", _accept_url(api, order_id), headers=tokens.admin, json=body
        )
        assert status == 422, problem
    assert await scalar(conn, "SELECT status FROM orders WHERE id = %s", order_id) == "underpaid"


async def test_refunds_due_lists_what_an_admin_must_settle(
    api: Any, conn: Conn, http: aiohttp.ClientSession, tokens: Tokens, runtime: Resources
) -> None:
    underpaid = await underpaid_order(conn)
    failed = await paid_order(conn)
    await conn.execute(
        "UPDATE orders SET fulfillment_status = 'failed', fulfillment_error = 'OrderFailed'"
        " WHERE id = %s",
        (failed,),
    )
    canceled = await paid_order(conn)
    await conn.execute(
        "INSERT INTO kinguin_orders (order_id, kinguin_order_id, status)"
        " VALUES (%s, 'KG-CANCELED', 'canceled')",
        (canceled,),
    )
    # Not due: awaiting payment, paid and on its way, fulfilled.
    await waiting_order(conn)
    await paid_order(conn)
    await fulfilled_order(conn, runtime)

    status, page = await request(http, "GET", f"{api.url}/admin/refunds-due", headers=tokens.admin)

    assert status == 200, page
    assert page["nextCursor"] is None
    items = {uuid.UUID(i["orderId"]): i for i in page["items"]}
    assert set(items) == {underpaid, failed, canceled}
    assert {k: items[underpaid][k] for k in ("status", "amountDue", "actuallyPaid")} == {
        "status": "underpaid", "amountDue": "9.99", "actuallyPaid": "0.00016",
    }  # fmt: skip
    assert items[underpaid]["payCurrency"] == "btc"
    assert items[failed]["fulfillmentStatus"] == "failed"
    assert items[failed]["amountDue"] == items[canceled]["amountDue"] == str(PRICE)
    assert "OrderFailed" in items[failed]["why"]
    assert "KG-CANCELED was canceled" in items[canceled]["why"]
    assert all(i["email"] == "ada@example.com" and i["currency"] == "eur" for i in items.values())
    sinces = [i["since"] for i in page["items"]]
    assert sinces == sorted(sinces, reverse=True)

    # One at a time, the cursor walks the same list.
    walked: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "1"} | ({"cursor": cursor} if cursor else {})
        status, one = await request(
            http, "GET", f"{api.url}/admin/refunds-due", headers=tokens.admin, params=params
        )
        assert status == 200, one
        walked += [i["orderId"] for i in one["items"]]
        cursor = one["nextCursor"]
        if cursor is None:
            break
    assert walked == [i["orderId"] for i in page["items"]]

    # Settled orders leave the list; the DBA view says the same as the endpoint.
    for order_id in (underpaid, failed):
        status, _ = await request(
            http,
            "POST",
            f"{api.url}/admin/orders/{order_id}/refund",
            headers=tokens.admin,
            json={"reason": "settled", "reference": f"NP-{order_id.hex[:6]}"},
        )
        assert status == 201
    assert await rows(conn, "SELECT order_id, amount_due FROM refunds_due") == [(canceled, PRICE)]
    status, bad = await request(
        http, "GET", f"{api.url}/admin/refunds-due", headers=tokens.admin, params={"cursor": "x"}
    )
    assert status == 422, bad


# --- the tolerance still pays tiny shortfalls, with no admin --------------------------------


@pytest.fixture
async def tolerant_api(
    make_settings: Callable[..., Settings], api_port: int
) -> AsyncIterator[Served]:
    served = await serve_app(await build_app(make_settings(payment_tolerance="0.50")), api_port)
    yield served
    await served.runner.cleanup()


async def _order_paid_through_the_sim(
    http: aiohttp.ClientSession, api: Served, sim: Any, conn: Conn, short_by: str
) -> uuid.UUID:
    """An order made with `POST /orders`, paid through the NOWPayments simulator `short_by`
    EUR short (at its fake rate), its IPNs delivered to the API."""
    await seed_product(conn)
    body = {"email": "ada@example.com", "items": [{"productId": TEXT_PRODUCT_ID, "qty": 1}]}
    async with http.post(f"{api.url}/orders", json=body) as resp:
        created = await resp.json()
    assert resp.status == 201, created
    order_id = uuid.UUID(created["id"])
    invoice = await scalar(conn, "SELECT invoice_id FROM orders WHERE id = %s", order_id)
    btc_per_eur = Decimal("0.000016")
    paid = str((PRICE - Decimal(short_by)) * btc_per_eur)
    async with http.post(
        f"{sim.url}/nowpayments/sim/invoices/{invoice}/pay",
        json={"wait": True, "interval_ms": 0, "statuses": ["finished"], "actually_paid": paid},
    ) as resp:
        assert resp.status == 201, await resp.text()
    return order_id


async def test_the_tolerance_pays_a_tiny_shortfall_and_an_admin_accepts_a_larger_one(
    tolerant_api: Served, sim: Any, conn: Conn, http: aiohttp.ClientSession, make_settings: Any
) -> None:
    within = await _order_paid_through_the_sim(http, tolerant_api, sim, conn, "0.30")
    beyond = await _order_paid_through_the_sim(http, tolerant_api, sim, conn, "0.80")

    assert await scalar(conn, "SELECT status FROM orders WHERE id = %s", within) == "paid"
    assert await scalar(conn, "SELECT bitloot_payment_evidence(%s)", within) == (
        await scalar(
            conn, "SELECT 'payment ' || payment_id FROM payments WHERE order_id = %s", within
        )
    )
    assert await _fulfill_jobs(conn, within) == 1
    assert await scalar(conn, "SELECT status FROM orders WHERE id = %s", beyond) == "underpaid"
    assert await _fulfill_jobs(conn, beyond) == 0
    assert await scalar(conn, "SELECT count(*) FROM payment_acceptances") == 0

    admin = {
        "Authorization": "Bearer " + mint_user_token(make_settings(), sub=ADMIN_SUB, admin=True)
    }
    status, page = await request(
        http, "GET", f"{tolerant_api.url}/admin/refunds-due", headers=admin
    )
    assert [(i["orderId"], i["amountDue"]) for i in page["items"]] == [(str(beyond), "19.19")]
    status, body = await request(
        http,
        "POST",
        f"{tolerant_api.url}/admin/orders/{beyond}/accept-payment",
        headers=admin,
        json={"reason": REASON},
    )
    assert (status, body["orderStatus"], body["amountReceived"]) == (200, "paid", "19.19")
    assert await _fulfill_jobs(conn, beyond) == 1
