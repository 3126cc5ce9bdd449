"""When Kinguin cannot be reached, `POST /orders` sells on a recent stored "in stock at our
price" (younger than BITLOOT_PRODUCT_STALE_TTL), and otherwise answers 503
`catalog-unavailable` with Retry-After, before any order row or invoice."""

from __future__ import annotations

import aiohttp
from catalog_support import TEXT, Conn, KinguinSim, StartApi, post_order, scalar

from bitloot.web.errors import PROBLEM_BASE

DOWN = {"status": 503, "count": None, "endpoints": ["get_product"]}


async def test_never_checked_and_kinguin_down_is_503_and_no_order(
    start_api: StartApi, catalog: None, conn: Conn, http: aiohttp.ClientSession, kinguin: KinguinSim
) -> None:
    api = await start_api()
    await kinguin.call("POST", "/faults/errors", DOWN)
    status, problem, response = await post_order(http, api, TEXT)
    assert status == 503, problem
    assert problem["type"] == PROBLEM_BASE + "catalog-unavailable"
    assert problem["productId"] == TEXT
    assert int(response.headers["Retry-After"]) > 0
    assert await scalar(conn, "SELECT count(*) FROM orders") == 0


async def test_a_recent_stored_yes_still_sells_when_kinguin_is_down(
    start_api: StartApi, catalog: None, conn: Conn, http: aiohttp.ClientSession, kinguin: KinguinSim
) -> None:
    api = await start_api(product_cache_ttl=0, product_stale_ttl=3600)
    status, created, _ = await post_order(http, api, TEXT)  # reads and stores "in stock"
    assert status == 201, created
    await kinguin.call("POST", "/faults/errors", DOWN)
    status, created, _ = await post_order(http, api, TEXT)
    assert status == 201, created
    assert await scalar(conn, "SELECT count(*) FROM orders") == 2

    # Older than the stale bound: no longer trusted.
    await conn.execute(
        "UPDATE products SET checked_at = now() - interval '2 hours' WHERE product_id = %s",
        (TEXT,),
    )
    status, problem, _ = await post_order(http, api, TEXT)
    assert status == 503, problem
    assert await scalar(conn, "SELECT count(*) FROM orders") == 2


async def test_a_stored_no_is_not_sold_on_when_kinguin_is_down(
    start_api: StartApi, catalog: None, conn: Conn, http: aiohttp.ClientSession, kinguin: KinguinSim
) -> None:
    api = await start_api(product_cache_ttl=0)
    await kinguin.change(TEXT, qty=0, notify=False)
    status, _, _ = await post_order(http, api, TEXT)
    assert status == 409
    await kinguin.call("POST", "/faults/errors", DOWN)
    status, problem, _ = await post_order(http, api, TEXT)
    assert status == 503, problem  # the stored "no" is old news; we cannot check now
    assert await scalar(conn, "SELECT count(*) FROM orders") == 0
