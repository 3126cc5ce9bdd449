"""A faulty key replaced exactly once under a worker killed mid-replacement: real API,
worker and simulator processes, PostgreSQL and SMTP.

The crashing worker dies (SIGKILL, as a power cut would) at a crash point of the
replacement's purchase (bitloot/chaos.py `REPLACEMENT_POINTS`): after its marker was
committed and before the Kinguin order is placed, or after the order was placed and before
it is recorded. A second worker must finish the replacement with exactly one Kinguin order
for the replacement's orderExternalId.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import psycopg
import pytest
from mail import SmtpSink
from stack import JWT_SECRET, Stack, reveal
from waiting import wait_until

from bitloot.auth.tokens import mint_user_token
from bitloot.chaos import REPLACEMENT_POINTS
from bitloot.config import load_settings
from bitloot.sim.kinguin_catalog import TEXT_PRODUCT_ID


def _one(stack: Stack, sql: str, *params: Any) -> tuple[Any, ...]:
    with psycopg.connect(stack.db_url) as conn:
        row = conn.execute(sql, params).fetchone()  # type: ignore[arg-type]
    assert row is not None, sql
    return tuple(row)


@pytest.mark.parametrize("point", REPLACEMENT_POINTS)
async def test_a_faulty_key_is_replaced_exactly_once_under_a_worker_killed_mid_replacement(
    stack: Stack, smtp: SmtpSink, point: str
) -> None:
    stack.extra_env["BITLOOT_SMTP_URL"] = smtp.url
    await stack.start_sim()
    await stack.start_api()
    saved, stack.extra_env = (
        stack.extra_env,
        stack.extra_env
        | {
            "BITLOOT_CRASH_AT": point,
            "BITLOOT_CRASH_ONCE": str(stack.data_dir / f"crashed-{point}"),
        },
    )
    crashy = stack.start_worker("crashy")
    stack.extra_env = saved
    settings = load_settings(jwt_secret=JWT_SECRET)
    admin = {"Authorization": f"Bearer {mint_user_token(settings, sub='ops-1', admin=True)}"}

    async with aiohttp.ClientSession() as http:
        order = await stack.create_order(http, [{"productId": TEXT_PRODUCT_ID, "qty": 1}])
        oid = order["id"]
        await stack.pay(http, oid)
        # The first purchase is not affected: the crash points of a replacement are its own.
        rows = await stack.wait_until([oid], timeout=90)
        assert rows[oid][:2] == ("fulfilled", "fulfilled"), rows
        (old_key,) = _one(stack, "SELECT key_id FROM key_delivery_logs WHERE order_id = %s", oid)

        url = f"{stack.api}/admin/orders/{oid}/keys/{old_key}/replace"
        async with http.post(url, json={"reason": "key reported as used"}, headers=admin) as r:
            body = await r.json()
            assert r.status == 202, body
        rid, external_id = body["replacementId"], body["orderExternalId"]
        assert external_id == f"{oid}-r1"

        for _ in range(300):
            if crashy.poll() is not None:
                break
            await asyncio.sleep(0.1)
        assert crashy.returncode == -9, f"the worker did not die at {point}"
        marker, recorded = _one(
            stack,
            "SELECT placement_started_at IS NOT NULL, kinguin_order_id FROM key_replacements"
            " WHERE id = %s",
            rid,
        )
        assert (marker, recorded) == (True, None)
        bought = [o for o in await stack.sim_orders(http) if o["orderExternalId"] == external_id]
        assert len(bought) == (1 if point == "replacement_after_place" else 0)

        stack.start_worker("survivor")

        def delivered() -> bool:
            (status,) = _one(stack, "SELECT status FROM key_replacements WHERE id = %s", rid)
            assert status != "failed"
            return bool(status == "delivered")

        await wait_until(delivered, 90, "the replacement delivered by the surviving worker")

        sim_orders = await stack.sim_orders(http)
        bought = [o for o in sim_orders if o["orderExternalId"] == external_id]
        assert len(bought) == 1, bought  # exactly one Kinguin order for the replacement
        assert len([o for o in sim_orders if o["orderExternalId"] == oid]) == 1
        [issued] = [k for p in bought[0]["products"] for k in p["keys"]]
        kinguin_order_id, new_key = _one(
            stack, "SELECT kinguin_order_id, new_key_id FROM key_replacements WHERE id = %s", rid
        )
        assert (kinguin_order_id, new_key) == (bought[0]["orderId"], issued["id"])
        # The surviving worker found the marker and looked the order up before buying: after
        # a placement it never asked Kinguin to place again (the dead pass's own calls died
        # with it).
        placements, lookups = _one(
            stack,
            "SELECT count(*) FILTER (WHERE endpoint = 'place_order'),"
            " count(*) FILTER (WHERE endpoint = 'find_order')"
            " FROM kinguin_calls WHERE replacement_id = %s",
            rid,
        )
        assert placements == (0 if point == "replacement_after_place" else 1)
        assert lookups >= 1

        # The customer gets the new key (decrypted as the key page does) and not the old.
        status, keys = await reveal(http, stack.api, oid, order["accessToken"])
        assert (status, keys) == (200, {issued["id"]: issued["serial"].encode()})
        headers = {"Authorization": f"Bearer {order['accessToken']}"}
        old_link = f"{stack.api}/fulfillment/{oid}/download-link?keyId={old_key}"
        async with http.get(old_link, headers=headers) as r:
            problem = await r.json(content_type=None)
            assert r.status == 410, problem
        assert problem["type"].endswith("/key-replaced")
        assert problem["replacedBy"] == issued["id"]

    def no_replacement_job_left() -> bool:
        (left,) = _one(
            stack,
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'replace_key'"
            " AND status IN ('todo', 'doing')",
        )
        return bool(left == 0)

    # Every job of the replacement (the crashed one retried, the webhook's) has run.
    await wait_until(no_replacement_job_left, 90, "no replace_key job left")
    assert _one(
        stack,
        "SELECT count(*) FROM email_outbox WHERE order_id = %s AND kind = 'key_replaced'",
        oid,
    ) == (1,)
    assert _one(stack, "SELECT count(*) FROM key_delivery_logs WHERE order_id = %s", oid) == (2,)
    assert _one(
        stack,
        "SELECT count(*) FROM admin_audit_log WHERE order_id = %s AND action = 'key.replace'"
        " AND reason = 'key reported as used'",
        oid,
    ) == (1,)
