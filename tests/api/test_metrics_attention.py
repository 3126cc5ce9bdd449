"""`/metrics` reads the audit views at scrape time: failed jobs, stuck orders, what needs
attention; a database that does not answer leaves the scrape answering."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
import psycopg
from harness import COVERING_PAYMENT, serve_app
from prometheus_client.parser import text_string_to_metric_families

from bitloot.config import Settings
from bitloot.server import build_app


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def _stuck_order(conn: psycopg.AsyncConnection[Any]) -> uuid.UUID:
    """Paid two hours ago, never fulfilled: stuck, and in needs_attention."""
    order_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO orders (id, email, currency, total_amount)"
        " VALUES (%s, 'stuck@example.com', 'eur', 20)",
        (order_id,),
    )
    await conn.execute("UPDATE orders SET status = 'waiting' WHERE id = %s", (order_id,))
    await conn.execute(COVERING_PAYMENT, (order_id,))
    await conn.execute(
        "UPDATE orders SET status = 'paid', paid_at = now() - interval '2 hours' WHERE id = %s",
        (order_id,),
    )
    return order_id


async def _failed_job(conn: psycopg.AsyncConnection[Any], order_id: uuid.UUID) -> None:
    cur = await conn.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, args)"
        " VALUES ('fulfillment', 'fulfill_order', %s::jsonb) RETURNING id",
        (f'{{"order_id": "{order_id}"}}',),
    )
    row = await cur.fetchone()
    assert row is not None
    await conn.execute("UPDATE procrastinate_jobs SET status = 'doing' WHERE id = %s", (row[0],))
    await conn.execute("UPDATE procrastinate_jobs SET status = 'failed' WHERE id = %s", (row[0],))


async def test_metrics_count_failed_jobs_stuck_orders_and_attention(
    conn: psycopg.AsyncConnection[Any], make_settings: Callable[..., Settings]
) -> None:
    served = await serve_app(await build_app(make_settings(metrics_public=True)))
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{served.url}/metrics") as resp:
                assert resp.status == 200
                before = _samples(await resp.text())
            assert before[("bitloot_stuck_orders", ())] == 0
            assert before[("bitloot_failed_jobs", (("queue", "fulfillment"),))] == 0
            assert before[("bitloot_needs_attention", (("kind", "order"),))] == 0

            order_id = await _stuck_order(conn)
            await _failed_job(conn, order_id)
            async with http.get(f"{served.url}/metrics") as resp:
                assert resp.status == 200
                after = _samples(await resp.text())
    finally:
        await served.runner.cleanup()
    assert after[("bitloot_stuck_orders", ())] == 1
    assert after[("bitloot_failed_jobs", (("queue", "fulfillment"),))] == 1
    assert after[("bitloot_failed_jobs", (("queue", "email"),))] == 0
    assert after[("bitloot_needs_attention", (("kind", "order"),))] == 1
    assert after[("bitloot_needs_attention", (("kind", "email"),))] == 0


async def test_metrics_answer_when_the_database_does_not(
    make_settings: Callable[..., Settings],
) -> None:
    app = await build_app(make_settings(metrics_public=True))
    served = await serve_app(app)
    try:
        from bitloot.web.context import RESOURCES

        await app[RESOURCES].pool.close()  # every query now fails at once
        async with aiohttp.ClientSession() as http, http.get(f"{served.url}/metrics") as resp:
            assert resp.status == 200
            text = await resp.text()
    finally:
        await served.runner.cleanup()
    samples = _samples(text)
    assert samples[("bitloot_stuck_orders", ())] != samples[("bitloot_stuck_orders", ())]  # NaN
    assert not any(name == "bitloot_failed_jobs" for name, _ in samples)
