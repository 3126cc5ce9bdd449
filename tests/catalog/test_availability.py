"""`POST /orders` checks stock and price at Kinguin before any order row or invoice: over real
HTTP, against the in-process API, the Kinguin and NOWPayments simulators and PostgreSQL."""

from __future__ import annotations

from typing import Any

import aiohttp
from catalog_support import MIXED, TEXT, Conn, KinguinSim, StartApi, one_row, post_order, scalar
from harness import Served

from bitloot.web.errors import PROBLEM_BASE


async def no_invoice_before(http: aiohttp.ClientSession, created: dict[str, Any]) -> bool:
    """The simulator numbers invoices in sequence: none exists before this order's."""
    invoice_id = int(created["invoiceUrl"].rsplit("/", 1)[1])
    base = created["invoiceUrl"].rsplit("/", 1)[0]
    async with http.get(f"{base}/{invoice_id - 1}") as resp:
        return resp.status == 404


def assert_refused(status: int, problem: Any, response: aiohttp.ClientResponse, slug: str) -> None:
    assert status == 409, problem
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert problem["type"] == PROBLEM_BASE + slug
    assert problem["productId"] == TEXT
    assert problem["unavailable"] == [{"productId": TEXT, "reason": slug}]


async def test_out_of_stock_is_refused_before_any_invoice_and_sold_after_product_update(
    api: Served, catalog: None, conn: Conn, http: aiohttp.ClientSession, kinguin: KinguinSim
) -> None:
    await kinguin.change(TEXT, qty=0, notify=False)
    status, problem, response = await post_order(http, api, TEXT)
    assert_refused(status, problem, response, "out-of-stock")
    assert await scalar(conn, "SELECT count(*) FROM orders") == 0
    assert await one_row(
        conn,
        "SELECT kinguin_qty, checked_at IS NOT NULL FROM products WHERE product_id = %s",
        TEXT,
    ) == (0, True)

    # Kinguin restocks and says so (current docs: no price in the event).
    sent = await kinguin.change(TEXT, qty=50)
    assert sent["webhook"]["httpStatus"] == 204, sent
    assert (
        await scalar(conn, "SELECT outcome FROM webhook_events WHERE external_id = %s", TEXT)
        == "product_updated"
    )
    assert await one_row(
        conn, "SELECT kinguin_qty, checked_at IS NULL FROM products WHERE product_id = %s", TEXT
    ) == (50, True)  # without a price the next order reads the product again

    reads = await kinguin.reads(TEXT)
    status, created, _ = await post_order(http, api, TEXT)
    assert status == 201, created
    assert await kinguin.reads(TEXT) == reads + 1
    assert await no_invoice_before(http, created)
    assert await scalar(conn, "SELECT count(*) FROM orders") == 1


async def test_over_price_is_refused_before_any_invoice_and_sold_after_product_update(
    api: Served, catalog: None, conn: Conn, http: aiohttp.ClientSession, kinguin: KinguinSim
) -> None:
    await kinguin.change(TEXT, price="12.01", notify=False)  # max_cost is 12.00
    status, problem, response = await post_order(http, api, TEXT)
    assert_refused(status, problem, response, "price-unavailable")
    assert await scalar(conn, "SELECT count(*) FROM orders") == 0

    # Cheaper again, and this event carries the price (older docs): the answer is complete,
    # so the next order within the cache TTL does not read Kinguin again.
    sent = await kinguin.change(TEXT, price="9.00", with_price=True)
    assert sent["webhook"]["httpStatus"] == 204, sent
    reads = await kinguin.reads(TEXT)
    status, created, _ = await post_order(http, api, TEXT)
    assert status == 201, created
    assert await kinguin.reads(TEXT) == reads
    assert await no_invoice_before(http, created)
    assert (
        str(await scalar(conn, "SELECT kinguin_price FROM products WHERE product_id = %s", TEXT))
        == "9.00"
    )


async def test_asking_for_more_keys_than_in_stock_is_out_of_stock(
    api: Served, catalog: None, conn: Conn, http: aiohttp.ClientSession, kinguin: KinguinSim
) -> None:
    # The mixed product sells any key type: its stock is all keys, not only text ones.
    await kinguin.change(MIXED, qty=3, text_qty=0, notify=False)
    status, created, _ = await post_order(http, api, MIXED, qty=3)
    assert status == 201, created
    await kinguin.change(TEXT, qty=4, text_qty=1, notify=False)  # a text-only product
    status, problem, response = await post_order(http, api, TEXT, qty=2)
    assert_refused(status, problem, response, "out-of-stock")
    assert await scalar(conn, "SELECT count(*) FROM orders") == 1


async def test_a_second_order_within_the_ttl_does_not_read_kinguin_again(
    start_api: StartApi, catalog: None, http: aiohttp.ClientSession, kinguin: KinguinSim
) -> None:
    api = await start_api(product_cache_ttl=60)
    for _ in range(2):
        status, created, _ = await post_order(http, api, TEXT)
        assert status == 201, created
    assert await kinguin.reads(TEXT) == 1


async def test_past_the_ttl_every_order_reads_kinguin_again(
    start_api: StartApi, catalog: None, http: aiohttp.ClientSession, kinguin: KinguinSim
) -> None:
    api = await start_api(product_cache_ttl=0)
    for _ in range(2):
        status, created, _ = await post_order(http, api, TEXT)
        assert status == 201, created
    assert await kinguin.reads(TEXT) == 2


async def test_an_idempotent_replay_does_not_check_again(
    api: Served, catalog: None, http: aiohttp.ClientSession, kinguin: KinguinSim
) -> None:
    body = {"email": "ada@example.com", "items": [{"productId": TEXT, "qty": 1}]}
    headers = {"Idempotency-Key": "replay-1"}
    async with http.post(f"{api.url}/orders", json=body, headers=headers) as resp:
        first = await resp.json()
        assert resp.status == 201, first
    await kinguin.change(TEXT, qty=0, notify=False)
    async with http.post(f"{api.url}/orders", json=body, headers=headers) as resp:
        again = await resp.json()
        assert resp.status == 201, again
    assert again["id"] == first["id"]
