"""The shop's exceptions end to end, with real `serve`, `worker` and simulator processes and
a real SMTP server: a product out of stock refused before any invoice and sold again after
Kinguin's `product.update`; an underpaid order told so, accepted by an admin and fulfilled
once; its refund (link dead, notice sent, Kinguin's refusal to take the keys back
recorded); lost links recovered for a known address only, with the old link revoked."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from decimal import Decimal
from email.message import EmailMessage
from typing import Any

import aiohttp
import psycopg
from mail import SmtpSink, text_of
from stack import JWT_SECRET, Stack, issued_serials, reveal

from bitloot.auth.tokens import mint_user_token
from bitloot.config import load_settings
from bitloot.sim.kinguin_catalog import TEXT_PRODUCT_ID

ADMIN_SUB = "ops-7"


def _admin() -> dict[str, str]:
    settings = load_settings(jwt_secret=JWT_SECRET)
    return {"Authorization": f"Bearer {mint_user_token(settings, sub=ADMIN_SUB, admin=True)}"}


def _rows(stack: Stack, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(stack.db_url) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


async def _eventually(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


def _one_email(smtp: SmtpSink, order_id: str, kind: str) -> EmailMessage:
    messages = smtp.for_order(order_id, kind=kind)
    assert len(messages) == 1, (kind, len(messages))
    return messages[0]


def _link_token(message: EmailMessage, order_id: str) -> str:
    found = re.search(
        rf"/orders/{order_id}/key(?:\?lang=[a-z]{{2}})?#token=(\S+)", text_of(message)
    )
    assert found is not None
    return found[1]


async def _start(stack: Stack, smtp: SmtpSink) -> None:
    stack.extra_env["BITLOOT_SMTP_URL"] = smtp.url
    await stack.start_sim()
    await stack.start_api()
    stack.start_worker()


async def test_stock_underpayment_acceptance_and_refund(stack: Stack, smtp: SmtpSink) -> None:
    await _start(stack, smtp)
    product = f"{stack.sim}/kinguin/sim/products/{TEXT_PRODUCT_ID}"
    async with aiohttp.ClientSession() as http:
        # 1. Sold out at Kinguin (the simulator tells us by product.update): refused with
        # 409 before any order or invoice exists.
        async with http.post(product, json={"qty": 0, "text_qty": 0, "notify": True}) as r:
            assert r.status == 200, await r.text()
        item = [{"productId": TEXT_PRODUCT_ID, "qty": 1}]
        body = {"email": "late@example.com", "items": item}
        async with http.post(f"{stack.api}/orders", json=body) as r:
            problem = await r.json()
            assert r.status == 409, problem
        assert problem["type"].endswith("/out-of-stock")
        assert problem["productId"] == TEXT_PRODUCT_ID
        # No order row, so no invoice either (an invoice is only ever asked for an order).
        assert _rows(stack, "SELECT count(*) FROM orders") == [(0,)]

        # Back in stock: the webhook makes the next order read Kinguin again, and it sells.
        async with http.post(product, json={"qty": 50, "text_qty": 50, "notify": True}) as r:
            assert r.status == 200, await r.text()
        order = await stack.create_order(http, item, email="late@example.com")
        oid = str(order["id"])

        # 2. Half the price arrives: underpaid, and the customer is told what is missing.
        await stack.pay(http, oid, statuses=["partially_paid"])
        await _eventually(lambda: stack.order_row(oid)[0] == "underpaid", "underpaid")
        await _eventually(lambda: bool(smtp.for_order(oid, kind="underpaid")), "underpaid mail")
        underpaid = text_of(_one_email(smtp, oid, "underpaid"))
        assert "short" in underpaid and "€14.99" in underpaid

        # 3. An admin accepts the short payment: paid, fulfilled once, receipt and keys mailed.
        url = f"{stack.api}/admin/orders/{oid}/accept-payment"
        reason = {"reason": "customer paid the rest by bank transfer"}
        async with http.post(url, json=reason, headers=_admin()) as r:
            assert r.status == 200, await r.text()
        async with http.post(url, json=reason, headers=_admin()) as r:
            assert r.status == 200, await r.text()  # a repeat changes nothing
        rows = await stack.wait_until([oid], timeout=60)
        assert rows[oid][:2] == ("fulfilled", "fulfilled"), rows
        await _eventually(lambda: bool(smtp.for_order(oid)), "delivery email")
        await stack.wait_settled([oid])
        issued = await issued_serials(stack, http, oid)
        assert len(issued) == 1  # bought once
        _one_email(smtp, oid, "payment_received")
        link = _link_token(_one_email(smtp, oid, "delivery"), oid)

        # 4. Kinguin will refuse to take the keys back; the admin refunds the order.
        await _control(
            http,
            f"{stack.sim}/kinguin/sim/faults/errors",
            {
                "status": 400,
                "kind": "NoKeysToReturn",
                "detail": "The key has been claimed.",
                "endpoints": ["return_keys"],
                "count": 1,
            },
        )
        refund = {"reason": "customer changed their mind", "reference": "NP-PAYOUT-1"}
        async with http.post(
            f"{stack.api}/admin/orders/{oid}/refund", json=refund, headers=_admin()
        ) as r:
            answer = await r.json()
            assert r.status == 201, answer
        assert answer["orderStatus"] == "refunded"
        assert await reveal(http, stack.api, oid, link) == (401, {})  # the link is revoked
        await _eventually(lambda: bool(smtp.for_order(oid, kind="refunded")), "refund notice")
        await _eventually(
            lambda: bool(
                _rows(stack, "SELECT 1 FROM kinguin_key_returns WHERE outcome = 'refused'")
            ),
            "the key return's refusal",
        )
        await stack.wait_settled([oid])

    # Every customer email of the order, once each, none with a key in it.
    kinds = ("underpaid", "payment_received", "delivery", "refunded")
    assert [len(smtp.for_order(oid, kind=k)) for k in kinds] == [1, 1, 1, 1]
    for message in smtp.messages:
        for serial in issued.values():
            assert serial not in message.as_bytes()
    # The timeline has both admin actions with their reasons, and the refund.
    timeline = _rows(
        stack,
        "SELECT source, what, reason FROM fulfillment_timeline WHERE order_id = %s"
        " AND source IN ('admin', 'refund', 'kinguin key return') ORDER BY at",
        oid,
    )
    assert [(s, w) for s, w, _ in timeline][:2] == [
        ("admin", "payment.accept"),
        ("admin", "order.refund"),
    ], timeline
    assert timeline[0][2] == reason["reason"]
    # The default amount is what arrived (half the price), never more than was received.
    refunded = f"{answer['amount']} eur (payout NP-PAYOUT-1)"
    assert Decimal(0) < Decimal(answer["amount"]) < Decimal("14.99")
    assert ("refund", refunded) in [(s, w) for s, w, _ in timeline]
    assert [s for s, _, _ in timeline].count("kinguin key return") >= 1


async def _control(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> None:
    async with http.post(url, json=body) as r:
        assert r.status in (200, 201, 204), await r.text()


async def test_recover_sends_fresh_links_only_to_a_known_address(
    stack: Stack, smtp: SmtpSink
) -> None:
    await _start(stack, smtp)
    async with aiohttp.ClientSession() as http:
        order = await stack.create_order(
            http, [{"productId": TEXT_PRODUCT_ID, "qty": 1}], email="Ada@Example.com"
        )
        oid = str(order["id"])
        await stack.pay(http, oid)
        await stack.wait_until([oid])
        await _eventually(lambda: bool(smtp.for_order(oid)), "delivery email")
        old_link = _link_token(_one_email(smtp, oid, "delivery"), oid)
        issued = await issued_serials(stack, http, oid)

        answers = []
        for email in ("ada@example.com", "nobody@example.com"):
            async with http.post(f"{stack.api}/orders/recover", json={"email": email}) as r:
                answers.append((r.status, await r.json()))
        assert answers[0] == answers[1]
        assert answers[0][0] == 202

        await _eventually(lambda: bool(smtp.for_order(oid, kind="recovery")), "recovery email")
        await stack.wait_settled([oid])
        await asyncio.sleep(1)  # the unknown address's request had as long to send anything
    recovery = smtp.for_order(oid, kind="recovery")
    assert len(recovery) == 1
    recovery_ids = [str(m["Message-ID"]).strip() for m in smtp.messages]
    assert [i for i in recovery_ids if i.startswith("<recovery-")] == [
        str(recovery[0]["Message-ID"]).strip()
    ]
    assert recovery[0]["To"].lower() == "ada@example.com"  # the order's address
    new_link = _link_token(recovery[0], oid)
    async with aiohttp.ClientSession() as http:
        assert await reveal(http, stack.api, oid, old_link) == (401, {})
        assert await reveal(http, stack.api, oid, new_link) == (200, issued)
    assert _rows(
        stack, "SELECT email, outcome, order_count FROM recovery_requests ORDER BY id"
    ) == [("ada@example.com", "sent", 1), ("nobody@example.com", "no_orders", 0)]
