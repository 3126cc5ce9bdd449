"""Kinguin's `product.update` webhook through the real endpoint: stored once, applied when newer
than the product's watermark, ignored when older, recorded for products we do not sell."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from catalog_support import TEXT, Conn, one_row
from harness import Served

from bitloot.kinguin.models import dump_json, format_event_time
from bitloot.sim.app import SimConfig

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def send(
    http: aiohttp.ClientSession, api: Served, product_id: str, at: datetime, qty: int, **more: Any
) -> None:
    body = {
        "kinguinId": 10001,
        "productId": product_id,
        "qty": qty,
        "textQty": qty,
        "cheapestOfferId": ["61a0000000000000000000a1"],
        "updatedAt": format_event_time(at),
        **more,
    }
    headers = {
        "X-Event-Name": "product.update",
        "X-Event-Secret": SimConfig().kinguin_webhook_secret,
        "Content-Type": "application/json",
    }
    async with http.post(f"{api.url}/webhooks/kinguin", data=dump_json(body), headers=headers) as r:
        assert (r.status, await r.read()) == (204, b"")


async def outcomes(conn: Conn) -> list[tuple[Any, ...]]:
    cur = await conn.execute(
        "SELECT external_id, outcome, needs_attention FROM webhook_events ORDER BY id"
    )
    return [tuple(row) for row in await cur.fetchall()]


async def stock(conn: Conn) -> tuple[Any, ...]:
    return await one_row(
        conn,
        "SELECT kinguin_qty, kinguin_updated_at, kinguin_price::text FROM products"
        " WHERE product_id = %s",
        TEXT,
    )


async def test_an_older_event_arriving_late_is_ignored(
    api: Served, catalog: None, conn: Conn, http: aiohttp.ClientSession
) -> None:
    await send(http, api, TEXT, T0 + timedelta(seconds=2), qty=0)
    await send(http, api, TEXT, T0 + timedelta(seconds=1), qty=40)  # older, sent later
    assert await stock(conn) == (0, T0 + timedelta(seconds=2), None)
    assert await outcomes(conn) == [(TEXT, "product_updated", False), (TEXT, "stale", False)]
    await send(http, api, TEXT, T0 + timedelta(seconds=3), qty=7, price=8.75)
    assert await stock(conn) == (7, T0 + timedelta(seconds=3), "8.75")


async def test_a_resent_event_is_stored_once(
    api: Served, catalog: None, conn: Conn, http: aiohttp.ClientSession
) -> None:
    for _ in range(2):
        await send(http, api, TEXT, T0, qty=5)
    assert await outcomes(conn) == [(TEXT, "product_updated", False)]


async def test_a_product_we_do_not_sell_is_recorded_and_ignored(
    api: Served, catalog: None, conn: Conn, http: aiohttp.ClientSession
) -> None:
    await send(http, api, "5c9b00000000000000000bad", T0, qty=5)
    assert await outcomes(conn) == [("5c9b00000000000000000bad", "unknown_product", False)]
    cur = await conn.execute("SELECT count(*) FROM products WHERE kinguin_qty IS NOT NULL")
    assert await cur.fetchone() == (0,)


async def test_a_far_future_event_is_flagged_and_never_the_watermark(
    api: Served, catalog: None, conn: Conn, http: aiohttp.ClientSession
) -> None:
    await send(http, api, TEXT, T0, qty=5, price=9.49)
    await send(http, api, TEXT, datetime.now(UTC) + timedelta(days=30), qty=0)
    # Not applied, but the stored answer is re-read before the next sale.
    assert await stock(conn) == (5, T0, "9.49")
    assert await one_row(
        conn, "SELECT checked_at IS NULL FROM products WHERE product_id = %s", TEXT
    ) == (True,)
    assert (await outcomes(conn))[-1] == (TEXT, "future_timestamp", True)
    await send(http, api, TEXT, T0 + timedelta(seconds=1), qty=3)  # a real, later event
    assert (await stock(conn))[:2] == (3, T0 + timedelta(seconds=1))


async def test_an_event_with_invalid_fields_is_400_naming_them(
    api: Served, catalog: None, conn: Conn, http: aiohttp.ClientSession
) -> None:
    headers = {
        "X-Event-Name": "product.update",
        "X-Event-Secret": SimConfig().kinguin_webhook_secret,
    }
    body = {"productId": TEXT, "qty": -1, "updatedAt": "yesterday"}
    async with http.post(f"{api.url}/webhooks/kinguin", json=body, headers=headers) as resp:
        problem = await resp.json(content_type=None)
        assert resp.status == 400, problem
    assert "qty" in problem["detail"] and "updatedAt" in problem["detail"]
    assert await outcomes(conn) == []
