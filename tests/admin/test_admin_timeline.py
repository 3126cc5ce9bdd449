"""`GET /admin/orders/{id}/fulfillment`: every part of the story, and no key material."""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
from admin_support import Conn, Tokens, fulfilled_order, insert_payment, request

SERIAL = "ABCDE-FGHIJ-KLMNO"


def _strings(value: Any) -> Iterator[str]:
    """Every key and scalar of a JSON document, as text."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    else:
        yield str(value)


async def _story(conn: Conn, order_id: uuid.UUID, wrapped: bytes, object_key: str) -> None:
    """What a fulfilled order leaves behind: a payment, webhooks, a Kinguin order, a stored
    key, an access to it and an admin action."""
    await insert_payment(conn, order_id, "pay-1")
    await conn.execute(
        "INSERT INTO webhook_events (provider, dedup_key, event_type, external_id, order_id,"
        " raw_body, outcome) VALUES ('nowpayments', 'pay-1:finished', 'finished', 'pay-1', %s,"
        " '{}', 'order_paid'), ('kinguin', 'kg-1:completed', 'order.complete', 'KG-1', %s, %s,"
        " 'fulfillment_enqueued_completed')",
        # The Kinguin body carries the serial: it stands for any provider body that might
        # hold key material, and bodies never appear in the timeline.
        (order_id, order_id, json.dumps({"orderId": "KG-1", "serial": SERIAL})),
    )
    await conn.execute(
        "INSERT INTO kinguin_orders (order_id, kinguin_order_id, status, payment_price, polls)"
        " VALUES (%s, 'KG-1', 'completed', 11.5000, 2)",
        (order_id,),
    )
    await conn.execute(
        "INSERT INTO kinguin_calls (order_id, endpoint, attempt, outcome, http_status,"
        " error_code, latency_ms) VALUES (%s, 'place_order', 1, 'server_error', 503,"
        " 'HTTP503', 12.5), (%s, 'place_order', 2, 'ok', NULL, NULL, 8.25)",
        (order_id, order_id),
    )
    await conn.execute(
        "INSERT INTO key_delivery_logs (order_id, key_id, product_id, object_key, content_type,"
        " wrapped_data_key, master_key_id, status, expires_at, last_accessed_at)"
        " VALUES (%s, 'key-1', 'prod-1', %s, 'text/plain', %s, 'k1', 'accessed',"
        " now() + interval '30 days', now())",
        (order_id, object_key, wrapped),
    )
    await conn.execute(
        "INSERT INTO key_access_events (order_id, key_id, actor_kind, actor_id, client_ip,"
        " user_agent) VALUES (%s, 'key-1', 'order_token', NULL, '203.0.113.9', 'Firefox')",
        (order_id,),
    )
    await conn.execute(
        "INSERT INTO admin_audit_log (admin_id, action, order_id, reason)"
        " VALUES ('admin-1', 'delivery_email.resend', %s, 'bounced')",
        (order_id,),
    )


async def test_timeline_tells_the_whole_story_without_key_material(
    api: Any, conn: Conn, http: aiohttp.ClientSession, tokens: Tokens
) -> None:
    order_id = await fulfilled_order(conn)
    wrapped = os.urandom(60)
    object_key = f"orders/{order_id}/key-1.bin"
    await _story(conn, order_id, wrapped, object_key)

    status, timeline = await request(
        http, "GET", f"{api.url}/admin/orders/{order_id}/fulfillment", headers=tokens.admin
    )
    assert status == 200, timeline

    order = timeline["order"]
    assert (order["status"], order["fulfillmentStatus"], order["totalAmount"]) == (
        "fulfilled",
        "fulfilled",
        "14.99",
    )
    assert [(e["machine"], e["fromStatus"], e["toStatus"]) for e in timeline["events"]] == [
        ("order", None, "created"),
        ("order", "created", "waiting"),
        ("order", "waiting", "paid"),
        ("fulfillment", "pending", "processing"),
        ("order", "paid", "fulfilled"),
        ("fulfillment", "processing", "fulfilled"),
    ]
    assert [p["paymentId"] for p in timeline["payments"]] == ["pay-1"]
    assert timeline["kinguinOrder"]["kinguinOrderId"] == "KG-1"
    assert timeline["kinguinOrder"]["paymentPrice"] == "11.5"
    [key] = timeline["keys"]
    assert key["keyId"] == "key-1" and key["masterKeyId"] == "k1"
    assert key["status"] == "accessed" and key["lastAccessedAt"] is not None
    assert set(key) == {
        "keyId",
        "productId",
        "status",
        "contentType",
        "masterKeyId",
        "expiresAt",
        "lastAccessedAt",
        "createdAt",
    }
    assert [(a["actorKind"], a["clientIp"]) for a in timeline["accessEvents"]] == [
        ("order_token", "203.0.113.9")
    ]
    assert [(m["generation"], m["status"]) for m in timeline["emails"]] == [(1, "sent")]
    assert [w["provider"] for w in timeline["webhookEvents"]] == ["nowpayments", "kinguin"]
    assert [a["action"] for a in timeline["adminActions"]] == ["delivery_email.resend"]
    assert [
        (c["endpoint"], c["attempt"], c["outcome"], c["httpStatus"], c["errorCode"], c["latencyMs"])
        for c in timeline["kinguinCalls"]
    ] == [
        ("place_order", 1, "server_error", 503, "HTTP503", "12.5"),
        ("place_order", 2, "ok", None, None, "8.25"),
    ]

    forbidden = {
        SERIAL,
        object_key,
        wrapped.hex(),
        "\\x" + wrapped.hex(),
        base64.b64encode(wrapped).decode(),
        base64.urlsafe_b64encode(wrapped).decode(),
    }
    for text in _strings(timeline):
        assert not any(secret in text for secret in forbidden), text


async def test_unknown_order_has_no_timeline(
    api: Any, http: aiohttp.ClientSession, tokens: Tokens
) -> None:
    for order_id in (uuid.uuid4(), "not-a-uuid"):
        status, problem = await request(
            http, "GET", f"{api.url}/admin/orders/{order_id}/fulfillment", headers=tokens.admin
        )
        assert status == 404, problem
