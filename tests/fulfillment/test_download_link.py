"""`GET /fulfillment/{orderId}/download-link`: what it hands out opens to exactly the keys
Kinguin issued, only once the order is fulfilled and while the keys are kept, and every
issue is recorded."""

from __future__ import annotations

import base64
import time
from datetime import datetime

import aiohttp
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from shop_support import ADMIN, OWNER, Shop
from structlog.testing import capture_logs

from bitloot.sim.kinguin_catalog import IMAGE_PRODUCT_ID, TEXT_PRODUCT_ID

TWO_PRODUCTS = [
    {"productId": TEXT_PRODUCT_ID, "qty": 2},
    {"productId": IMAGE_PRODUCT_ID, "qty": 1},
]


def open_blob(blob: bytes, data_key_b64: str, aad: str) -> bytes:
    """Decrypt as any client would, from CONTRACT.md alone."""
    assert blob[0] == 0x01
    return AESGCM(base64.b64decode(data_key_b64)).decrypt(blob[1:13], blob[13:], aad.encode())


async def test_links_decrypt_to_the_serials_kinguin_issued(shop: Shop) -> None:
    order = await shop.fulfilled_order(OWNER, TWO_PRODUCTS)
    before = time.time()
    reply = await shop.get(f"/fulfillment/{order.id}/download-link", order.token)
    assert reply.status == 200, reply.body
    assert reply.headers["Cache-Control"] == "no-store"
    assert reply.body["orderId"] == str(order.id)
    expires = datetime.fromisoformat(reply.body["expiresAt"]).timestamp()
    assert before + 900 - 2 <= expires <= time.time() + 900

    issued = await shop.issued_keys(order)
    assert sorted(kind.split("/")[0] for kind, _ in issued.values()) == ["image", "text", "text"]
    opened: dict[str, tuple[str, bytes]] = {}
    async with aiohttp.ClientSession() as plain:  # no token: the URL is the capability
        for key in reply.body["keys"]:
            assert key["algorithm"] == "AES-256-GCM"
            async with plain.get(key["signedUrl"]) as resp:
                assert resp.status == 200
                blob = await resp.read()
            aad = f"{order.id}:{key['keyId']}"
            opened[key["keyId"]] = (key["contentType"], open_blob(blob, key["dataKey"], aad))
    assert opened == issued


async def test_links_are_409_until_the_order_is_fulfilled(shop: Shop) -> None:
    order = await shop.create_order(OWNER)
    path = f"/fulfillment/{order.id}/download-link"

    waiting = await shop.get(path, order.token)
    assert waiting.status == 409
    assert waiting.headers["Content-Type"].startswith("application/problem+json")
    assert waiting.body["orderStatus"] == "waiting"
    assert waiting.body["fulfillmentStatus"] == "pending"

    await shop.pay(order)
    assert (await shop.get(path, order.token)).status == 409
    await shop.fulfil(order)
    assert (await shop.get(path, order.token)).status == 200


async def test_expired_keys_are_410_and_nothing_is_recorded(shop: Shop) -> None:
    order = await shop.fulfilled_order(OWNER, [{"productId": TEXT_PRODUCT_ID, "qty": 2}])
    path = f"/fulfillment/{order.id}/download-link"
    status = await shop.get(f"/fulfillment/{order.id}/status", order.token)
    [first, _] = [k["keyId"] for k in status.body["keys"]]
    # Past its retention, before the expiry job has marked it: already gone.
    await shop.conn.execute(
        "UPDATE key_delivery_logs SET expires_at = now() - interval '1 second'"
        " WHERE order_id = %s AND key_id = %s",
        (order.id, first),
    )
    reply = await shop.get(path, order.token)
    assert reply.status == 410
    assert reply.body["type"].endswith("/keys-gone")
    assert reply.body["keys"] == [{"keyId": first, "status": "expired"}]

    await shop.conn.execute(
        "UPDATE key_delivery_logs SET status = 'deleted' WHERE order_id = %s", (order.id,)
    )
    reply = await shop.get(path, order.token)
    assert reply.status == 410
    assert {k["status"] for k in reply.body["keys"]} == {"deleted"}
    assert await shop.scalar("SELECT count(*) FROM key_access_events") == 0


async def test_refunded_order_is_410(shop: Shop) -> None:
    order = await shop.fulfilled_order(OWNER)
    await shop.conn.execute("UPDATE orders SET status = 'refunded' WHERE id = %s", (order.id,))
    reply = await shop.get(f"/fulfillment/{order.id}/download-link", order.token)
    assert reply.status == 410


async def test_each_issue_records_one_event_per_key_and_marks_the_keys_accessed(
    shop: Shop,
) -> None:
    order = await shop.fulfilled_order(OWNER, [{"productId": TEXT_PRODUCT_ID, "qty": 2}])
    path = f"/fulfillment/{order.id}/download-link"
    agent = "Mozilla/5.0 " + "x" * 1000
    spoofed = {"User-Agent": agent, "X-Forwarded-For": "203.0.113.9"}
    assert (await shop.get(path, order.token, **spoofed)).status == 200
    assert (await shop.get(path, shop.user_token(OWNER), **spoofed)).status == 200
    assert (await shop.get(path, shop.user_token(ADMIN, admin=True))).status == 200

    cur = await shop.conn.execute(
        "SELECT actor_kind, actor_id, host(client_ip), user_agent, count(*)"
        " FROM key_access_events WHERE order_id = %s"
        " GROUP BY 1, 2, 3, 4 ORDER BY min(id)",
        (order.id,),
    )
    rows = await cur.fetchall()
    truncated = agent[:256]
    assert rows == [
        ("order_token", str(order.id), "127.0.0.1", truncated, 2),
        ("user", OWNER, "127.0.0.1", truncated, 2),
        ("admin", ADMIN, "127.0.0.1", "Python/3.11 aiohttp/" + aiohttp.__version__, 2),
    ]
    cur = await shop.conn.execute(
        "SELECT status, last_accessed_at IS NOT NULL FROM key_delivery_logs WHERE order_id = %s",
        (order.id,),
    )
    assert await cur.fetchall() == [("accessed", True), ("accessed", True)]


async def test_status_reveals_and_records_nothing(shop: Shop) -> None:
    order = await shop.fulfilled_order(OWNER, [{"productId": TEXT_PRODUCT_ID, "qty": 2}])
    path = f"/fulfillment/{order.id}/status"
    for _ in range(3):
        reply = await shop.get(path, order.token)
        assert reply.status == 200
    assert set(reply.body) == {
        "orderId",
        "orderStatus",
        "fulfillmentStatus",
        "locale",
        "items",
        "keys",
        "updatedAt",
    }
    assert (reply.body["orderStatus"], reply.body["fulfillmentStatus"]) == (
        "fulfilled",
        "fulfilled",
    )
    assert [set(k) for k in reply.body["keys"]] == [{"keyId", "status", "productId"}] * 2
    assert {k["status"] for k in reply.body["keys"]} == {"stored"}
    assert await shop.scalar("SELECT count(*) FROM key_access_events") == 0
    assert await shop.scalar("SELECT count(*) FROM key_delivery_logs WHERE status = 'stored'") == 2

    await shop.get(f"/fulfillment/{order.id}/download-link", order.token)
    reply = await shop.get(path, order.token)
    assert {k["status"] for k in reply.body["keys"]} == {"accessed"}


async def test_status_of_an_unpaid_order_has_no_keys(shop: Shop) -> None:
    order = await shop.create_order(OWNER)
    reply = await shop.get(f"/fulfillment/{order.id}/status", order.token)
    assert reply.status == 200
    assert (reply.body["orderStatus"], reply.body["keys"]) == ("waiting", [])


async def test_admin_issue_is_logged_as_an_override_and_no_secret_reaches_the_log(
    shop: Shop,
) -> None:
    order = await shop.fulfilled_order(OWNER)
    path = f"/fulfillment/{order.id}/download-link"
    with capture_logs() as logs:
        admin = await shop.get(path, shop.user_token(ADMIN, admin=True))
        owner = await shop.get(path, order.token)
    assert admin.status == owner.status == 200
    [override] = [e for e in logs if e["event"] == "fulfillment.admin_override"]
    assert (override["admin_id"], override["order_id"]) == (ADMIN, str(order.id))
    logged = repr(logs)
    for reply in (admin, owner):
        for key in reply.body["keys"]:
            assert key["dataKey"] not in logged
            assert key["signedUrl"].split("sig=")[1] not in logged
    assert order.token not in logged
