"""Through the real API: an order made with `POST /orders`, paid through the NOWPayments
simulator with every IPN sent three times, fulfilled by the
worker from the Kinguin simulator, its events delivered by a worker pass. Each event
arrives once per webhook-id, paid before fulfilled, verified, and no body carries a key or
a token. Then /metrics shows the attempts and the backlog's age."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import psycopg
from harness import Served, serve_app
from prometheus_client.parser import text_string_to_metric_families
from webhook_delivery_support import (
    add_endpoint,
    order_with_events,
    receiving,
    run_jobs,
    scalar,
    worker_resources,
)

from bitloot.config import Settings
from bitloot.metrics import REGISTRY
from bitloot.queue import FULFILLMENT_QUEUE, WEBHOOKS_QUEUE
from bitloot.server import build_app

Conn = psycopg.AsyncConnection[Any]
DATA_FIELDS = {"orderId", "status", "fulfillmentStatus", "total", "currency"}
PRODUCT_ID = "5c9b5f6b2539a4e8f172916a"  # the simulator's text-key product


async def pay_with_duplicates(http: aiohttp.ClientSession, sim: Served, invoice: str) -> None:
    """The simulator pays the invoice and sends each IPN three times."""
    body = {
        "wait": True,
        "interval_ms": 0,
        "statuses": ["waiting", "confirming", "finished"],
        "faults": {"duplicate": 2},
    }
    async with http.post(f"{sim.url}/nowpayments/sim/invoices/{invoice}/pay", json=body) as r:
        result = await r.json()
    assert r.status == 201 and result["done"], result
    codes = [d["response_code"] for d in result["deliveries"]]
    assert len(codes) == 9 and set(codes) == {200}, codes


async def test_events_of_a_paid_and_fulfilled_order_arrive_once_each_and_in_order(
    conn: Conn, make_settings: Callable[..., Settings], api: Served, sim: Served
) -> None:
    async with (
        receiving(secrets={}) as rx,
        worker_resources(make_settings) as res,
        aiohttp.ClientSession() as http,
    ):
        _, rx.secrets["current"] = await add_endpoint(conn, res.ring, rx.url)
        await conn.execute(
            "INSERT INTO products (product_id, name, price, currency, max_cost)"
            " VALUES (%s, 'Game', 14.99, 'eur', 12)",
            (PRODUCT_ID,),
        )
        body = {"email": "ada@example.com", "items": [{"productId": PRODUCT_ID, "qty": 1}]}
        async with http.post(f"{api.url}/orders", json=body) as resp:
            created = await resp.json()
        assert resp.status == 201, created
        order_id = created["id"]
        invoice = await scalar(conn, "SELECT invoice_id FROM orders WHERE id = %s", order_id)
        await pay_with_duplicates(http, sim, invoice)
        assert await scalar(conn, "SELECT count(*) FROM webhook_events") == 3  # deduped
        # Fulfillment (it polls Kinguin for the keys, a job scheduled a second later each
        # time), then the events it caused.
        for _ in range(60):
            await run_jobs(res, queues=(FULFILLMENT_QUEUE, WEBHOOKS_QUEUE))
            if len(rx.received) >= 2:
                break
            await asyncio.sleep(0.5)
        assert await scalar(conn, "SELECT status FROM orders WHERE id = %s", order_id) == (
            "fulfilled"
        )
        async with http.get(f"{sim.url}/kinguin/sim/orders?include_keys=1") as resp:
            serials = [
                k["serial"]
                for o in (await resp.json())["orders"]
                for p in o["products"]
                for k in p.get("keys", [])
                if "serial" in k
            ]
    assert serials  # a real key was bought, so "no key in any body" means something
    assert [(t, o) for _, t, o in rx.seen()] == [
        ("order.paid", order_id),
        ("order.fulfilled", order_id),
    ]
    assert len({r.webhook_id for r in rx.received}) == 2
    assert rx.all_verified()
    for got in rx.received:
        assert set(got.data) == DATA_FIELDS
        text = got.raw.decode()
        assert created["accessToken"] not in text
        assert not any(serial in text for serial in serials)
        assert "ada@example.com" not in text
    assert [r.data["status"] for r in rx.received] == ["paid", "fulfilled"]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_show_attempts_by_outcome_and_the_oldest_pending_event(
    conn: Conn, make_settings: Callable[..., Settings]
) -> None:
    def delivered() -> float:
        value = REGISTRY.get_sample_value(
            "bitloot_webhook_attempts_total", {"outcome": "delivered"}
        )
        return value or 0.0

    served = await serve_app(await build_app(make_settings(metrics_public=True)))
    try:
        async with (
            receiving(secrets={}) as rx,
            worker_resources(make_settings) as res,
            aiohttp.ClientSession() as http,
        ):
            endpoint_id, rx.secrets["current"] = await add_endpoint(conn, res.ring, rx.url)
            async with http.get(f"{served.url}/metrics") as resp:
                before = samples(await resp.text())
            assert before[("bitloot_webhook_oldest_pending_seconds", ())] == 0
            assert ("bitloot_webhook_attempts_total", (("outcome", "retry"),)) in before

            await order_with_events(conn, "paid")
            await conn.execute(
                "UPDATE webhook_deliveries SET created_at = now() - interval '10 minutes'"
            )
            async with http.get(f"{served.url}/metrics") as resp:
                waiting = samples(await resp.text())
            assert 590 < waiting[("bitloot_webhook_oldest_pending_seconds", ())] < 700

            count = delivered()
            await run_jobs(res)
            assert delivered() == count + 1  # counted by the worker that made the attempt
            async with http.get(f"{served.url}/metrics") as resp:
                after = samples(await resp.text())
            assert after[("bitloot_webhook_oldest_pending_seconds", ())] == 0
            assert after[("bitloot_needs_attention", (("kind", "webhook endpoint"),))] == 0
            assert after[("bitloot_failed_jobs", (("queue", "webhooks"),))] == 0
    finally:
        await served.runner.cleanup()
    assert endpoint_id is not None
