"""Bad IPNs are refused over real HTTP, with a problem document and no trace in the
order tables; an IPN for an unknown order is acknowledged and kept for admins."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from harness import Served
from ipn_support import (
    IPN_SECRET,
    create_order,
    fulfillment_jobs,
    ipn_for,
    post_ipn,
    signed,
    snapshot,
)

from bitloot.metrics import IPN_OUTCOMES
from bitloot.nowpayments.signature import RawNumber, sign_ipn
from bitloot.web.context import RESOURCES

PROBLEM_MEMBERS = {"type", "title", "status", "detail", "requestId"}
OPTIONAL_MEMBERS = {"instance", "maxBytes"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def order_id(api: Served, conn: Any, http: aiohttp.ClientSession) -> uuid.UUID:
    """An order waiting for its payment: what a bad IPN must not touch."""
    return await create_order(http, api.url, conn)


def assert_problem(content_type: str, body: Any, status: int) -> None:
    """A problem document with its stable members and nothing from inside the server."""
    assert content_type == "application/problem+json"
    assert body["status"] == status
    assert body["type"].startswith("https://bitloot.dev/problems/")
    assert PROBLEM_MEMBERS <= set(body) <= PROBLEM_MEMBERS | OPTIONAL_MEMBERS
    text = json.dumps(body)
    for internal in ("Traceback", "psycopg", "webhook_events", "bitloot/", IPN_SECRET):
        assert internal not in text


async def test_missing_signature_is_401_and_leaves_no_trace(
    api: Served, conn: Any, http: aiohttp.ClientSession, order_id: uuid.UUID
) -> None:
    raw, _ = signed(ipn_for(order_id))
    before = await snapshot(conn)
    status, content_type, body = await post_ipn(http, api.url, raw, None)
    assert status == 401
    assert_problem(content_type, body, 401)
    assert await snapshot(conn) == before


async def test_refused_signature_is_counted_in_the_metric(
    api: Served, http: aiohttp.ClientSession
) -> None:
    counter = IPN_OUTCOMES.labels(outcome="bad_signature")
    before = counter._value.get()
    raw, _ = signed(ipn_for(uuid.uuid4()))
    await post_ipn(http, api.url, raw, None)
    await post_ipn(http, api.url, raw, "0" * 128)
    assert counter._value.get() == before + 2


async def test_wrong_signature_is_401_and_leaves_no_trace(
    api: Served, conn: Any, http: aiohttp.ClientSession, order_id: uuid.UUID
) -> None:
    raw, signature = signed(ipn_for(order_id))
    at = raw.index(b'"actually_paid":0.00023984') + len(b'"actually_paid":0.0002398')
    tampered = raw[:at] + b"5" + raw[at + 1 :]  # 0.00023984 -> 0.00023985
    before = await snapshot(conn)
    for body_sent, signature_sent in [
        (tampered, signature),  # one flipped byte of the body
        (raw, sign_ipn(raw, "another-secret")),
    ]:
        status, content_type, body = await post_ipn(http, api.url, body_sent, signature_sent)
        assert status == 401
        assert_problem(content_type, body, 401)
    assert await snapshot(conn) == before


async def test_malformed_json_is_400_and_leaves_no_trace(
    api: Served, conn: Any, http: aiohttp.ClientSession, order_id: uuid.UUID
) -> None:
    raw = b'{"payment_id": 5077129999, "payment_status": "finished",'
    before = await snapshot(conn)
    status, content_type, body = await post_ipn(http, api.url, raw, "ab" * 64)
    assert status == 400
    assert_problem(content_type, body, 400)
    assert await snapshot(conn) == before


async def test_signed_ipn_with_an_unknown_status_is_400_and_leaves_no_trace(
    api: Served, conn: Any, http: aiohttp.ClientSession, order_id: uuid.UUID
) -> None:
    raw, signature = signed(ipn_for(order_id, payment_status="paid_in_full"))
    before = await snapshot(conn)
    status, content_type, body = await post_ipn(http, api.url, raw, signature)
    assert status == 400
    assert_problem(content_type, body, 400)
    assert "payment_status" in body["detail"]
    assert "paid_in_full" not in body["detail"]  # names the field, never echoes the value
    assert await snapshot(conn) == before


async def test_signed_ipn_with_a_negative_amount_is_400_and_leaves_no_trace(
    api: Served, conn: Any, http: aiohttp.ClientSession, order_id: uuid.UUID
) -> None:
    before = await snapshot(conn)
    for field in (
        "price_amount",
        "pay_amount",
        "actually_paid",
        "actually_paid_at_fiat",
        "outcome_amount",
    ):
        raw, signature = signed(ipn_for(order_id, **{field: RawNumber("-0.00023984")}))
        status, content_type, body = await post_ipn(http, api.url, raw, signature)
        assert status == 400, field
        assert_problem(content_type, body, 400)
        assert field in body["detail"]
        assert "0.00023984" not in body["detail"]  # names the field, never echoes the value
    assert await snapshot(conn) == before


async def test_oversized_body_is_413_and_leaves_no_trace(
    api: Served, conn: Any, http: aiohttp.ClientSession, order_id: uuid.UUID
) -> None:
    limit = api.app[RESOURCES].settings.max_body_bytes
    raw, signature = signed(ipn_for(order_id, order_description="x" * limit))
    assert len(raw) > limit
    before = await snapshot(conn)
    status, content_type, body = await post_ipn(http, api.url, raw, signature)
    assert status == 413
    assert_problem(content_type, body, 413)
    assert await snapshot(conn) == before


async def test_unknown_order_is_200_stored_once_and_flagged_for_admins(
    api: Served, conn: Any, http: aiohttp.ClientSession, order_id: uuid.UUID
) -> None:
    before = await snapshot(conn)
    sent = []
    for unknown in (str(uuid.uuid4()), "woo-order-1234"):  # a UUID we never made; not a UUID
        raw, signature = signed(ipn_for(unknown, payment_id=RawNumber(str(len(sent) + 1))))
        status, _, body = await post_ipn(http, api.url, raw, signature)
        assert (status, body) == (200, {"status": "accepted", "outcome": "unknown_order"})
        status, _, body = await post_ipn(http, api.url, raw, signature)  # sent again
        assert (status, body["status"]) == (200, "duplicate")
        sent.append(("unknown_order", True, raw.decode()))
    cur = await conn.execute(
        "SELECT outcome, needs_attention, raw_body FROM webhook_events ORDER BY id"
    )
    assert await cur.fetchall() == sent
    after = await snapshot(conn)
    assert after.pop("webhook_events") == before.pop("webhook_events") + 2
    assert after == before
    assert await fulfillment_jobs(conn) == 0
