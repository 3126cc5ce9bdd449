"""`POST /admin/orders/{orderId}/keys/{keyId}/replace`: one replacement bought from the
Kinguin simulator exactly once, stored and delivered like the first keys, the faulty key
revoked (download-link 410), the customer's notice queued once, every step audited.

The API and the simulators run in this process over real HTTP; each `run_replacement`
call is one pass of the `replace_key` job (the crash under a real worker process is in
tests/e2e/test_replace_e2e.py).
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from shop_support import ADMIN, OWNER, Order, Reply, Shop
from waiting import wait_until

from bitloot.fulfillment.replace import run_replacement
from bitloot.sim.kinguin_catalog import TEXT_PRODUCT_ID

# --- helpers -------------------------------------------------------------------------------


async def post_replace(
    shop: Shop, order_id: uuid.UUID, key_id: str, body: Any = None, token: str | None = "admin"
) -> Reply:
    headers = {}
    if token == "admin":
        headers["Authorization"] = f"Bearer {shop.user_token(ADMIN, admin=True)}"
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    url = f"{shop.api_url}/admin/orders/{order_id}/keys/{key_id}/replace"
    payload = {"reason": "customer says the key is already used"} if body is None else body
    async with shop.http.post(url, json=payload, headers=headers) as resp:
        return Reply(resp.status, await resp.json(content_type=None), dict(resp.headers))


async def live_key_ids(shop: Shop, order: Order) -> list[str]:
    reply = await shop.get(f"/fulfillment/{order.id}/status", order.token)
    assert reply.status == 200, reply.body
    return [k["keyId"] for k in reply.body["keys"]]


async def sim_orders(shop: Shop, external_id: str) -> list[dict[str, Any]]:
    async with shop.http.get(f"{shop.sim_url}/kinguin/sim/orders?include_keys=1") as resp:
        orders = (await resp.json())["orders"]
    return [o for o in orders if o.get("orderExternalId") == external_id]


async def sim_control(shop: Shop, path: str, body: Any = None) -> Any:
    async with shop.http.post(f"{shop.sim_url}/kinguin/sim{path}", json=body or {}) as resp:
        assert resp.status < 300, await resp.text()
        return await resp.json(content_type=None)


async def replacement_row(shop: Shop, replacement_id: int) -> dict[str, Any]:
    cur = await shop.conn.execute(
        "SELECT status, kinguin_order_id, new_key_id, error, external_id, number"
        " FROM key_replacements WHERE id = %s",
        (replacement_id,),
    )
    row = await cur.fetchone()
    assert row is not None
    names = ("status", "kinguin_order_id", "new_key_id", "error", "external_id", "number")
    return dict(zip(names, row, strict=True))


async def open_links(body: dict[str, Any], order_id: uuid.UUID) -> dict[str, bytes]:
    """What a client decrypts from a download-link answer: key id -> plaintext."""
    out: dict[str, bytes] = {}
    async with aiohttp.ClientSession() as plain:
        for key in body["keys"]:
            async with plain.get(key["signedUrl"]) as resp:
                assert resp.status == 200
                blob = await resp.read()
            aead = AESGCM(base64.b64decode(key["dataKey"]))
            aad = f"{order_id}:{key['keyId']}".encode()
            out[key["keyId"]] = aead.decrypt(blob[1:13], blob[13:], aad)
    return out


async def count(shop: Shop, sql: str, *params: Any) -> int:
    return int(await shop.scalar(sql, *params))


# --- the replacement -----------------------------------------------------------------------


async def test_replacement_is_bought_once_delivered_and_the_old_key_revoked(shop: Shop) -> None:
    order = await shop.fulfilled_order(OWNER)
    [old_key] = await live_key_ids(shop, order)

    reply = await post_replace(shop, order.id, old_key)
    assert reply.status == 202, reply.body
    assert reply.headers["Cache-Control"] == "no-store"
    body = reply.body
    assert (body["keyId"], body["number"], body["status"]) == (old_key, 1, "requested")
    assert body["orderExternalId"] == f"{order.id}-r1"
    assert body["reason"] == "customer says the key is already used"
    assert body["adminId"] == ADMIN
    rid = body["replacementId"]
    # The job was queued in the request's transaction.
    assert (
        await count(
            shop,
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'replace_key'"
            " AND (args->>'replacement_id')::bigint = %s",
            rid,
        )
        == 1
    )

    await run_replacement(shop.runtime, rid)

    row = await replacement_row(shop, rid)
    assert row["status"] == "delivered", row
    [bought] = await sim_orders(shop, f"{order.id}-r1")
    assert row["kinguin_order_id"] == bought["orderId"]
    [issued] = [k for p in bought["products"] for k in p["keys"]]
    assert row["new_key_id"] == issued["id"]
    assert len(await sim_orders(shop, str(order.id))) == 1  # the first purchase, untouched
    # Kinguin calls of the replacement are recorded with it: one placement.
    assert (
        await count(
            shop,
            "SELECT count(*) FROM kinguin_calls"
            " WHERE replacement_id = %s AND endpoint = 'place_order'",
            rid,
        )
        == 1
    )

    # The customer sees only the live key, and it opens to what Kinguin issued.
    assert await live_key_ids(shop, order) == [issued["id"]]
    links = await shop.get(f"/fulfillment/{order.id}/download-link", order.token)
    assert links.status == 200, links.body
    assert await open_links(links.body, order.id) == {issued["id"]: issued["serial"].encode()}
    one = await shop.get(f"/fulfillment/{order.id}/download-link?keyId={issued['id']}", order.token)
    assert one.status == 200
    assert [k["keyId"] for k in one.body["keys"]] == [issued["id"]]

    # The faulty key: 410, naming its replacement; no link, nothing recorded for it.
    accesses = await count(
        shop, "SELECT count(*) FROM key_access_events WHERE key_id = %s", old_key
    )
    gone = await shop.get(f"/fulfillment/{order.id}/download-link?keyId={old_key}", order.token)
    assert gone.status == 410, gone.body
    assert gone.body["type"].endswith("/key-replaced")
    assert (gone.body["keyId"], gone.body["replacedBy"]) == (old_key, issued["id"])
    assert "signedUrl" not in str(gone.body)
    assert (
        await count(shop, "SELECT count(*) FROM key_access_events WHERE key_id = %s", old_key)
        == accesses
    )
    missing = await shop.get(f"/fulfillment/{order.id}/download-link?keyId=nope", order.token)
    assert missing.status == 404

    cur = await shop.conn.execute(
        "SELECT key_id, revoked_reason, replaces_key_id FROM key_delivery_logs"
        " WHERE order_id = %s ORDER BY created_at",
        (order.id,),
    )
    assert await cur.fetchall() == [(old_key, "replaced", None), (issued["id"], None, old_key)]

    # One notice, never the key; the audit log and the timeline carry the reason.
    cur = await shop.conn.execute(
        "SELECT kind, generation, details FROM email_outbox WHERE order_id = %s"
        " AND kind = 'key_replaced'",
        (order.id,),
    )
    assert await cur.fetchall() == [("key_replaced", 1, {"key_id": old_key})]
    cur = await shop.conn.execute(
        "SELECT admin_id, action, reason, details->>'keyId' FROM admin_audit_log"
        " WHERE order_id = %s",
        (order.id,),
    )
    assert await cur.fetchall() == [
        (ADMIN, "key.replace", "customer says the key is already used", old_key)
    ]
    cur = await shop.conn.execute(
        "SELECT source, what, actor, reason FROM fulfillment_timeline WHERE order_id = %s"
        " AND source IN ('admin', 'key revoked')",
        (order.id,),
    )
    assert sorted(await cur.fetchall()) == [
        ("admin", "key.replace", ADMIN, "customer says the key is already used"),
        ("key revoked", f"{old_key} (replaced)", "bitloot", None),
    ]
    serial = issued["serial"]
    cur = await shop.conn.execute(
        "SELECT count(*) FROM email_outbox WHERE order_id = %s AND details::text LIKE %s",
        (order.id, f"%{serial}%"),
    )
    assert await cur.fetchone() == (0,)

    # The admin's list shows it.
    admin = {"Authorization": f"Bearer {shop.user_token(ADMIN, admin=True)}"}
    async with shop.http.get(
        f"{shop.api_url}/admin/orders/{order.id}/key-replacements", headers=admin
    ) as resp:
        listed = await resp.json()
    assert resp.status == 200
    assert [(r["replacementId"], r["status"], r["newKeyId"]) for r in listed["items"]] == [
        (rid, "delivered", issued["id"])
    ]


async def test_repeated_requests_and_duplicated_jobs_buy_once(shop: Shop) -> None:
    order = await shop.fulfilled_order(OWNER)
    [old_key] = await live_key_ids(shop, order)

    first = await post_replace(shop, order.id, old_key)
    again = await post_replace(shop, order.id, old_key, {"reason": "asked twice"})
    assert (first.status, again.status) == (202, 200)
    rid = first.body["replacementId"]
    assert again.body["replacementId"] == rid
    assert again.body["reason"] == first.body["reason"]  # the first request's, unchanged
    assert (
        await count(shop, "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'replace_key'")
        == 1
    )
    assert (
        await count(shop, "SELECT count(*) FROM admin_audit_log WHERE order_id = %s", order.id) == 1
    )

    # Duplicated jobs, two of them at once, then more after delivery.
    await asyncio.gather(run_replacement(shop.runtime, rid), run_replacement(shop.runtime, rid))
    await run_replacement(shop.runtime, rid)
    await run_replacement(shop.runtime, rid)

    assert (await replacement_row(shop, rid))["status"] == "delivered"
    assert len(await sim_orders(shop, f"{order.id}-r1")) == 1
    assert (
        await count(shop, "SELECT count(*) FROM key_delivery_logs WHERE order_id = %s", order.id)
        == 2
    )
    assert (
        await count(
            shop,
            "SELECT count(*) FROM email_outbox WHERE order_id = %s AND kind = 'key_replaced'",
            order.id,
        )
        == 1
    )
    after = await post_replace(shop, order.id, old_key)
    assert (after.status, after.body["status"]) == (200, "delivered")


async def test_the_replacement_key_can_be_replaced_in_turn(shop: Shop) -> None:
    order = await shop.fulfilled_order(OWNER)
    [old_key] = await live_key_ids(shop, order)
    first = await post_replace(shop, order.id, old_key)
    await run_replacement(shop.runtime, first.body["replacementId"])
    [second_key] = await live_key_ids(shop, order)

    second = await post_replace(shop, order.id, second_key)
    assert second.status == 202
    assert (second.body["number"], second.body["orderExternalId"]) == (2, f"{order.id}-r2")
    await run_replacement(shop.runtime, second.body["replacementId"])
    [third_key] = await live_key_ids(shop, order)
    assert third_key not in (old_key, second_key)
    cur = await shop.conn.execute(
        "SELECT generation FROM email_outbox WHERE order_id = %s AND kind = 'key_replaced'"
        " ORDER BY generation",
        (order.id,),
    )
    assert await cur.fetchall() == [(1,), (2,)]


async def test_the_kinguin_webhook_of_a_replacement_queues_its_job(shop: Shop) -> None:
    order = await shop.fulfilled_order(OWNER)
    [old_key] = await live_key_ids(shop, order)
    await sim_control(shop, "/delivery", {"delay": 600, "gradual": False})
    reply = await post_replace(shop, order.id, old_key)
    rid = reply.body["replacementId"]

    await run_replacement(shop.runtime, rid)  # placed; the key is not there yet
    row = await replacement_row(shop, rid)
    assert row["status"] == "placed"
    poll = (
        "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'replace_key'"
        " AND status = 'todo' AND scheduled_at > now()"
    )
    assert await count(shop, poll) == 1

    before = await count(shop, "SELECT coalesce(max(id), 0) FROM procrastinate_jobs")
    await sim_control(shop, f"/orders/{row['kinguin_order_id']}/complete")
    outcome = (
        "SELECT outcome, needs_attention, order_id FROM webhook_events"
        " WHERE external_id = %s AND outcome = 'replacement_enqueued'"
    )

    async def webhook_applied() -> bool:
        cur = await shop.conn.execute(outcome, (row["kinguin_order_id"],))
        return await cur.fetchone() is not None

    await wait_until(webhook_applied, 10, "the replacement's webhook applied")
    cur = await shop.conn.execute(outcome, (row["kinguin_order_id"],))
    assert await cur.fetchone() == ("replacement_enqueued", False, order.id)
    now = (
        "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'replace_key' AND id > %s"
        " AND status = 'todo' AND (scheduled_at IS NULL OR scheduled_at <= now())"
    )
    assert await count(shop, now, before) == 1  # the poke: a job to run now

    await run_replacement(shop.runtime, rid)
    assert (await replacement_row(shop, rid))["status"] == "delivered"
    assert len(await sim_orders(shop, f"{order.id}-r1")) == 1


async def test_a_kinguin_refusal_fails_the_replacement_and_keeps_the_old_key(shop: Shop) -> None:
    order = await shop.fulfilled_order(OWNER)
    [old_key] = await live_key_ids(shop, order)
    await sim_control(shop, f"/products/{TEXT_PRODUCT_ID}/stock", {"qty": 0})
    reply = await post_replace(shop, order.id, old_key)
    rid = reply.body["replacementId"]

    await run_replacement(shop.runtime, rid)
    row = await replacement_row(shop, rid)
    assert row["status"] == "failed"
    assert "ProductUnavailable" in row["error"]
    assert await sim_orders(shop, f"{order.id}-r1") == []
    assert await shop.statuses(order) == ("fulfilled", "fulfilled")
    assert await live_key_ids(shop, order) == [old_key]
    links = await shop.get(f"/fulfillment/{order.id}/download-link?keyId={old_key}", order.token)
    assert links.status == 200
    assert (
        await count(
            shop,
            "SELECT count(*) FROM email_outbox WHERE order_id = %s AND kind = 'key_replaced'",
            order.id,
        )
        == 0
    )
    again = await post_replace(shop, order.id, old_key)
    assert (again.status, again.body["status"], again.body["error"]) == (
        200,
        "failed",
        row["error"],
    )
    await run_replacement(shop.runtime, rid)  # failed is final: nothing bought
    assert await sim_orders(shop, f"{order.id}-r1") == []
    # A person sees it, and the order's timeline says what happened and why.
    assert (
        await count(
            shop,
            "SELECT count(*) FROM needs_attention WHERE kind = 'replacement'"
            " AND order_id = %s AND reference = %s::text AND why LIKE '%%ProductUnavailable%%'",
            order.id,
            rid,
        )
        == 1
    )
    assert (
        await count(
            shop,
            "SELECT count(*) FROM fulfillment_timeline WHERE order_id = %s"
            " AND source = 'key replacement'",
            order.id,
        )
        == 2
    )


async def test_an_order_refunded_before_the_job_runs_is_never_delivered(shop: Shop) -> None:
    order = await shop.fulfilled_order(OWNER)
    [old_key] = await live_key_ids(shop, order)
    reply = await post_replace(shop, order.id, old_key)
    await shop.conn.execute("UPDATE orders SET status = 'refunded' WHERE id = %s", (order.id,))

    await run_replacement(shop.runtime, reply.body["replacementId"])
    row = await replacement_row(shop, reply.body["replacementId"])
    assert row["status"] == "failed"
    assert row["error"] == "the order is refunded: nothing was bought"
    assert await sim_orders(shop, f"{order.id}-r1") == []


# --- refusals ------------------------------------------------------------------------------


async def test_refusals(shop: Shop) -> None:
    order = await shop.fulfilled_order(OWNER)
    [key] = await live_key_ids(shop, order)

    unknown_order = await post_replace(shop, uuid.uuid4(), key)
    assert unknown_order.status == 404
    assert (await post_replace(shop, order.id, "no-such-key")).status == 404
    assert (await post_replace(shop, order.id, "x" * 300)).status == 404
    for body in ({}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 501}):
        bad = await post_replace(shop, order.id, key, body)
        assert bad.status == 422, (body, bad.body)
    assert (await post_replace(shop, order.id, key, token=None)).status == 401
    assert (await post_replace(shop, order.id, key, token=shop.user_token(OWNER))).status == 403
    assert (await post_replace(shop, order.id, key, token=order.token)).status == 403
    assert await count(shop, "SELECT count(*) FROM key_replacements") == 0

    # A key already revoked (not by a replacement): 409.
    await shop.conn.execute(
        "UPDATE key_delivery_logs SET revoked_at = now(), revoked_reason = 'refunded'"
        " WHERE order_id = %s",
        (order.id,),
    )
    revoked = await post_replace(shop, order.id, key)
    assert revoked.status == 409, revoked.body
    assert revoked.body["revokedReason"] == "refunded"

    # A refunded order: 409.
    other = await shop.fulfilled_order(OWNER)
    [other_key] = await live_key_ids(shop, other)
    await shop.conn.execute("UPDATE orders SET status = 'refunded' WHERE id = %s", (other.id,))
    refunded = await post_replace(shop, other.id, other_key)
    assert refunded.status == 409, refunded.body
    assert refunded.body["orderStatus"] == "refunded"
    assert await count(shop, "SELECT count(*) FROM key_replacements") == 0
    assert (
        await count(shop, "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'replace_key'")
        == 0
    )


@pytest.mark.parametrize("field", ["order_id", "key_id", "number", "external_id", "reason"])
async def test_the_database_keeps_a_replacement_s_identity(shop: Shop, field: str) -> None:
    order = await shop.fulfilled_order(OWNER)
    [key] = await live_key_ids(shop, order)
    reply = await post_replace(shop, order.id, key)
    values = {
        "order_id": "gen_random_uuid()",
        "key_id": "'other'",
        "number": "7",
        "external_id": f"'{order.id}'",
        "reason": "'changed'",
    }
    with pytest.raises(Exception, match="never"):
        await shop.conn.execute(
            f"UPDATE key_replacements SET {field} = {values[field]} WHERE id = %s",
            (reply.body["replacementId"],),
        )


async def test_the_database_moves_a_replacement_only_forward(shop: Shop) -> None:
    order = await shop.fulfilled_order(OWNER)
    [key] = await live_key_ids(shop, order)
    reply = await post_replace(shop, order.id, key)
    rid = reply.body["replacementId"]
    with pytest.raises(Exception, match="not allowed"):
        await shop.conn.execute(
            "UPDATE key_replacements SET status = 'delivered', new_key_id = 'k',"
            " kinguin_order_id = 'x', placement_started_at = now() WHERE id = %s",
            (rid,),
        )
    await run_replacement(shop.runtime, rid)
    with pytest.raises(Exception, match="never changes"):
        await shop.conn.execute(
            "UPDATE key_replacements SET status = 'failed', error = 'no' WHERE id = %s", (rid,)
        )
    with pytest.raises(Exception, match="revoked"):
        await shop.conn.execute(
            "UPDATE key_delivery_logs SET revoked_at = NULL, revoked_reason = NULL"
            " WHERE order_id = %s AND key_id = %s",
            (order.id, key),
        )
