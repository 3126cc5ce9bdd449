"""Fulfillment end to end: real API and worker processes, simulators, PostgreSQL and SMTP."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import psycopg
import pytest
from mail import SmtpSink, text_of
from stack import Stack, issued_serials
from waiting import wait_until

from bitloot.chaos import POINTS
from bitloot.sim.kinguin_catalog import IMAGE_PRODUCT_ID, MIXED_PRODUCT_ID, TEXT_PRODUCT_ID
from bitloot.storage.local import LocalObjectStorage  # noqa: F401 - documents the layout
from bitloot.vault.crypto import MasterKeyRing, open_blob, unwrap_data_key


@pytest.fixture
async def running(stack: Stack, smtp: SmtpSink) -> Stack:
    stack.extra_env["BITLOOT_SMTP_URL"] = smtp.url
    await stack.start_sim()
    await stack.start_api()
    return stack


def delivered_serials(stack: Stack, order_id: str) -> dict[str, bytes]:
    """Decrypt what BitLoot stored for an order: key id -> plaintext (as a client would)."""
    ring = MasterKeyRing.parse(stack.master_keys)
    with psycopg.connect(stack.db_url) as conn:
        rows = conn.execute(
            "SELECT key_id, object_key, wrapped_data_key, master_key_id FROM key_delivery_logs"
            " WHERE order_id = %s",
            (order_id,),
        ).fetchall()
    out = {}
    for key_id, object_key, wrapped, mk in rows:
        data_key = unwrap_data_key(
            wrapped, master_key_id=mk, order_id=order_id, key_id=key_id, ring=ring
        )
        blob = (stack.data_dir / "objects" / object_key).read_bytes()
        out[key_id] = open_blob(blob, data_key, order_id=order_id, key_id=key_id)
    return out


def kinguin_purchases(orders: list[dict[str, Any]]) -> Counter[str]:
    return Counter(o.get("orderExternalId") for o in orders)


async def test_text_image_and_multi_item_orders_end_to_end(running: Stack, smtp: SmtpSink) -> None:
    stack = running
    stack.start_worker()
    async with aiohttp.ClientSession() as http:
        orders = [
            await stack.create_order(http, [{"productId": TEXT_PRODUCT_ID, "qty": 1}]),
            await stack.create_order(http, [{"productId": IMAGE_PRODUCT_ID, "qty": 2}]),
            await stack.create_order(
                http,
                [
                    {"productId": TEXT_PRODUCT_ID, "qty": 2},
                    {"productId": MIXED_PRODUCT_ID, "qty": 3},
                ],
            ),
        ]
        ids = [o["id"] for o in orders]
        for oid in ids:
            await stack.pay(http, oid)
        rows = await stack.wait_until(ids)
        assert all(r[:2] == ("fulfilled", "fulfilled") for r in rows.values()), rows
        for oid, expected_keys in zip(ids, [1, 2, 5], strict=True):
            issued = await issued_serials(stack, http, oid)
            assert len(issued) == expected_keys
            assert delivered_serials(stack, oid) == issued  # what the customer decrypts
        image_types = {
            k["type"]
            for o in await stack.sim_orders(http)
            if o["orderExternalId"] == ids[1]
            for p in o["products"]
            for k in p["keys"]
        }
        assert image_types <= {"image/jpeg", "image/png", "image/gif"} and image_types
    await _wait_for_mail(smtp, ids)
    for oid in ids:
        [message] = smtp.for_order(oid)
        assert message["Subject"] == "Your BitLoot order is ready"
        link = re.search(
            r"https?://\S+/orders/" + oid + r"/key(?:\?lang=[a-z]{2})?#token=[\w.-]+",
            text_of(message),
        )
        assert link, text_of(message)
        assert urlsplit(link.group(0)).netloc == urlsplit(stack.api).netloc


async def _wait_for_mail(smtp: SmtpSink, order_ids: list[str], timeout: float = 30) -> None:
    for _ in range(int(timeout * 10)):
        if all(smtp.for_order(oid) for oid in order_ids):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("delivery emails did not arrive")


async def test_duplicate_and_concurrent_ipns_and_webhooks_buy_once(
    running: Stack, smtp: SmtpSink
) -> None:
    stack = running
    stack.start_worker("w1", "--concurrency", "4")
    stack.start_worker("w2", "--concurrency", "4")
    async with aiohttp.ClientSession() as http:
        await http.post(
            f"{stack.sim}/kinguin/sim/faults/webhooks", json={"duplicate": 5, "reorder": 3}
        )
        order = await stack.create_order(http, [{"productId": TEXT_PRODUCT_ID, "qty": 3}])
        oid = order["id"]
        await stack.pay(http, oid, faults={"duplicate": 3, "reorder": True})
        # ... and the final IPN replayed concurrently, as NOWPayments' manual resend would.
        ipns = (await (await http.get(f"{stack.sim}/nowpayments/sim/ipns")).json())["items"]
        final = next(i for i in ipns if i["payment_status"] == "finished")
        await asyncio.gather(*[
            http.post(f"{stack.api}/webhooks/nowpayments", data=final["body"].encode(),
                      headers={"x-nowpayments-sig": final["signature"],
                               "Content-Type": "application/json"})
            for _ in range(20)
        ])  # fmt: skip
        await stack.wait_until([oid])
        assert stack.order_row(oid)[:2] == ("fulfilled", "fulfilled")
        assert kinguin_purchases(await stack.sim_orders(http))[oid] == 1
    await _wait_for_mail(smtp, [oid])
    # Not "wait and see": the simulator has delivered the order's completion webhook (both
    # copies, under the duplicate fault) and BitLoot has finished everything that it and the
    # IPNs caused. Only now would a second email have been sent already.
    async with aiohttp.ClientSession() as http:

        async def webhook_copies_delivered() -> bool:
            deliveries = await stack.sim_webhooks(http)
            done = [d for d in deliveries if d["orderExternalId"] == oid]
            return sum(d["outcome"] in ("delivered", "gave_up") for d in done) >= 2

        await wait_until(webhook_copies_delivered, 60, "the duplicated Kinguin webhook sent")
    await stack.wait_settled([oid])
    assert len(smtp.for_order(oid)) == 1
    with psycopg.connect(stack.db_url) as conn:
        [(keys,)] = conn.execute(
            "SELECT count(*) FROM key_delivery_logs WHERE order_id = %s", (oid,)
        )
        [(emails,)] = conn.execute(
            "SELECT array_agg(kind ORDER BY kind) FROM email_outbox WHERE order_id = %s", (oid,)
        )
    # One delivery email and one payment receipt, whatever was duplicated.
    assert (keys, emails) == (3, ["delivery", "payment_received"])


@pytest.mark.parametrize("point", POINTS)
async def test_worker_killed_at_each_step_recovers_without_buying_twice(
    running: Stack, smtp: SmtpSink, point: str
) -> None:
    stack = running
    async with aiohttp.ClientSession() as http:
        if point == "while_waiting":
            await http.post(f"{stack.sim}/kinguin/sim/delivery", json={"delay": 2, "gradual": True})
        crashy = stack.extra_env | {
            "BITLOOT_CRASH_AT": point,
            "BITLOOT_CRASH_ONCE": str(stack.data_dir / f"crashed-{point}"),
        }
        saved, stack.extra_env = stack.extra_env, crashy
        first = stack.start_worker("crashy")
        stack.extra_env = saved
        order = await stack.create_order(http, [{"productId": TEXT_PRODUCT_ID, "qty": 2}])
        oid = order["id"]
        await stack.pay(http, oid)
        for _ in range(300):
            if first.poll() is not None:
                break
            await asyncio.sleep(0.1)
        assert first.returncode == -9, f"the worker did not die at {point}"
        stack.start_worker("survivor")
        rows = await stack.wait_until([oid], timeout=90)
        assert rows[oid][:2] == ("fulfilled", "fulfilled"), rows
        assert kinguin_purchases(await stack.sim_orders(http))[oid] == 1
        assert delivered_serials(stack, oid) == await issued_serials(stack, http, oid)
    await _wait_for_mail(smtp, [oid])
    await stack.wait_settled([oid])  # the crashed job rerun too: no second email is coming
    assert len(smtp.for_order(oid)) == 1
