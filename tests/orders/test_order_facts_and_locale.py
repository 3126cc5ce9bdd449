"""`POST /orders` keeps what the customer was shown: each line's name and product facts
copied from the catalog as it stood after the stock check read Kinguin (a later change to
the product never alters the order), and the customer's language (an explicit `locale`,
else Accept-Language, else English). Real HTTP, the Kinguin and NOWPayments simulators and
a fresh PostgreSQL database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from datetime import date
from typing import Any

import aiohttp
import pytest
from harness import Served

from bitloot.auth.tokens import mint_user_token
from bitloot.catalog import tasks
from bitloot.config import Settings
from bitloot.resources import install, open_resources
from bitloot.sim.kinguin_catalog import IMAGES, MIXED_PRODUCT_ID, TEXT_PRODUCT_ID
from bitloot.web.context import RESOURCES

Conn = Any
PREORDER = "5f00000000000000000000ac"

CYBERPUNK_FACTS = {
    "platform": "GOG COM",
    "regionalLimitations": "EUROPE",
    "excludedCountries": ["CH", "GB", "NO"],
    "imageUrl": f"{IMAGES}/cyberpunk-2077.jpg",
    "isPreorder": False,
    "releaseDate": "2020-12-10",
}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def sim_call(http: aiohttp.ClientSession, sim: Served, path: str, body: Any) -> None:
    async with http.post(f"{sim.url}/kinguin/sim{path}", json=body) as resp:
        assert resp.status < 300, await resp.text()


@pytest.fixture
async def catalog(conn: Conn, sim: Served, http: aiohttp.ClientSession) -> None:
    """Both seeded products in our catalog, never read from Kinguin yet (no facts), and a
    region-locked pre-order added to the simulator and to the catalog."""
    await conn.execute(
        "INSERT INTO products (product_id, name, price, currency, max_cost) VALUES"
        " (%s, 'Stardew Valley', 14.99, 'eur', 12), (%s, 'Cyberpunk 2077', 19.99, 'eur', 15),"
        " (%s, 'Upcoming Game', 59.99, 'eur', 50)",
        (TEXT_PRODUCT_ID, MIXED_PRODUCT_ID, PREORDER),
    )
    await sim_call(
        http,
        sim,
        "/products",
        {
            "product_id": PREORDER,
            "name": "Upcoming Game Epic Key",
            "platform": "Epic Games",
            "regional_limitations": "EUROPE",
            "country_limitation": ["gb", "CH"],
            "is_preorder": True,
            "release_date": "2027-03-01",
            "offers": [{"price": "45.00", "qty": 20}],
        },
    )


async def post_order(
    http: aiohttp.ClientSession,
    api: Served,
    *products: str,
    locale: Any = ...,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    body: dict[str, Any] = {
        "email": "ada@example.com",
        "items": [{"productId": p, "qty": 1} for p in products],
    }
    if locale is not ...:
        body["locale"] = locale
    async with http.post(f"{api.url}/orders", json=body, headers=headers or {}) as resp:
        return resp.status, await resp.json(content_type=None)


async def get_order(http: aiohttp.ClientSession, api: Served, created: Any) -> Any:
    auth = {"Authorization": f"Bearer {created['accessToken']}"}
    async with http.get(f"{api.url}/orders/{created['id']}", headers=auth) as resp:
        assert resp.status == 200
        return await resp.json()


def items_by_product(order: Any) -> dict[str, Any]:
    return {item["productId"]: item for item in order["items"]}


async def refresh_catalog(make_settings: Callable[..., Settings]) -> None:
    async with AsyncExitStack() as stack:
        install(await open_resources(make_settings(), stack, kinguin=True))
        try:
            await tasks.refresh_catalog(timestamp=0)
        finally:
            install(None)


# --- the snapshot ---------------------------------------------------------------------------


async def test_each_line_keeps_the_name_and_the_facts_read_at_the_stock_check(
    api: Served, catalog: None, conn: Conn, http: aiohttp.ClientSession
) -> None:
    status, created = await post_order(http, api, MIXED_PRODUCT_ID, PREORDER)
    assert status == 201, created
    lines = items_by_product(await get_order(http, api, created))
    assert lines[MIXED_PRODUCT_ID] == {
        "productId": MIXED_PRODUCT_ID,
        "name": "Cyberpunk 2077",
        "qty": 1,
        "unitPrice": "19.99",
        **CYBERPUNK_FACTS,
    }
    assert lines[PREORDER] == {
        "productId": PREORDER,
        "name": "Upcoming Game",
        "qty": 1,
        "unitPrice": "59.99",
        "platform": "Epic Games",
        "regionalLimitations": "EUROPE",
        "excludedCountries": ["GB", "CH"],
        "imageUrl": None,
        "isPreorder": True,
        "releaseDate": "2027-03-01",
    }
    cur = await conn.execute(
        "SELECT name, platform, excluded_countries, is_preorder, release_date FROM order_items"
        " WHERE order_id = %s AND product_id = %s",
        (created["id"], PREORDER),
    )
    assert await cur.fetchall() == [
        ("Upcoming Game", "Epic Games", ["GB", "CH"], True, date(2027, 3, 1))
    ]


async def test_a_later_change_of_the_product_leaves_the_order_as_it_was(
    api: Served,
    catalog: None,
    conn: Conn,
    http: aiohttp.ClientSession,
    sim: Served,
    make_settings: Callable[..., Settings],
) -> None:
    token = mint_user_token(api.app[RESOURCES].settings, sub="user-ada")
    auth = {"Authorization": f"Bearer {token}"}
    async with http.post(
        f"{api.url}/orders",
        json={"email": "ada@example.com", "items": [{"productId": MIXED_PRODUCT_ID, "qty": 1}]},
        headers=auth,
    ) as resp:
        assert resp.status == 201
        created = await resp.json()
    before = await get_order(http, api, created)

    # The operator renames it; Kinguin now says it is an Epic pre-order without exclusions.
    await conn.execute(
        "UPDATE products SET name = 'Cyberpunk 2077 (renamed)' WHERE product_id = %s",
        (MIXED_PRODUCT_ID,),
    )
    change = {
        "notify": False,
        "platform": "Epic Games",
        "regional_limitations": "REGION FREE",
        "country_limitation": [],
        "image_url": None,
        "is_preorder": True,
        "release_date": "2030-01-01",
    }
    await sim_call(http, sim, f"/products/{MIXED_PRODUCT_ID}", change)
    await refresh_catalog(make_settings)
    cur = await conn.execute(
        "SELECT name, platform FROM products WHERE product_id = %s", (MIXED_PRODUCT_ID,)
    )
    assert await cur.fetchall() == [("Cyberpunk 2077 (renamed)", "Epic Games")]

    after = await get_order(http, api, created)
    assert after["items"] == before["items"]
    assert items_by_product(after)[MIXED_PRODUCT_ID]["name"] == "Cyberpunk 2077"
    assert {k: items_by_product(after)[MIXED_PRODUCT_ID][k] for k in CYBERPUNK_FACTS} == (
        CYBERPUNK_FACTS
    )
    async with http.get(f"{api.url}/orders", headers=auth) as resp:
        assert resp.status == 200
        [listed] = (await resp.json())["items"]
    assert listed["items"] == before["items"] and listed["locale"] == "en"

    # A new order is made with what the catalog holds now.
    status, again = await post_order(http, api, MIXED_PRODUCT_ID)
    assert status == 201, again
    line = items_by_product(await get_order(http, api, again))[MIXED_PRODUCT_ID]
    assert (line["name"], line["platform"], line["isPreorder"]) == (
        "Cyberpunk 2077 (renamed)",
        "Epic Games",
        True,
    )


# --- the language ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "accept_language", "expected"),
    [
        ("de", None, "de"),
        ("es-MX", None, "es"),  # reduced to the language
        ("ES", "de", "es"),  # explicit wins over the header
        (None, "fr-CH, es;q=0.8, de;q=0.9", "de"),  # the best we speak, by q-value
        (..., "es-419", "es"),
        (..., "fr, *;q=0.5", "en"),  # nothing we speak: English
        (..., None, "en"),
    ],
)
async def test_the_order_language_comes_from_locale_then_accept_language_then_english(
    api: Served,
    catalog: None,
    conn: Conn,
    http: aiohttp.ClientSession,
    locale: Any,
    accept_language: str | None,
    expected: str,
) -> None:
    headers = {"Accept-Language": accept_language} if accept_language else {}
    status, created = await post_order(http, api, TEXT_PRODUCT_ID, locale=locale, headers=headers)
    assert status == 201, created
    assert created["locale"] == expected
    assert (await get_order(http, api, created))["locale"] == expected
    cur = await conn.execute("SELECT locale FROM orders WHERE id = %s", (created["id"],))
    assert await cur.fetchall() == [(expected,)]


@pytest.mark.parametrize("locale", ["fr", "pt-BR", "", "english please", "x" * 40, 7])
async def test_an_explicit_language_we_do_not_speak_is_a_422_naming_those_we_do(
    api: Served, catalog: None, conn: Conn, http: aiohttp.ClientSession, locale: Any
) -> None:
    status, problem = await post_order(
        http, api, TEXT_PRODUCT_ID, locale=locale, headers={"Accept-Language": "de"}
    )
    assert status == 422, problem
    [error] = problem["errors"]
    assert error["loc"][:2] == ["body", "locale"]
    if isinstance(locale, str) and locale in ("fr", "pt-BR"):
        assert "en, de, es" in error["msg"]
    cur = await conn.execute("SELECT count(*) FROM orders")
    assert await cur.fetchall() == [(0,)]


async def test_a_retry_in_another_language_is_the_same_order_in_the_first_language(
    api: Served, catalog: None, conn: Conn, http: aiohttp.ClientSession
) -> None:
    body = {
        "email": "ada@example.com",
        "items": [{"productId": TEXT_PRODUCT_ID, "qty": 1}],
        "locale": "de",
    }
    headers = {"Idempotency-Key": "checkout-locale"}
    async with http.post(f"{api.url}/orders", json=body, headers=headers) as resp:
        first = await resp.json()
        assert resp.status == 201, first
    async with http.post(f"{api.url}/orders", json=body, headers=headers) as resp:
        same = await resp.json()
        assert resp.status == 201, same
    async with http.post(
        f"{api.url}/orders", json=body | {"locale": "es"}, headers=headers
    ) as resp:
        other_language = await resp.json()
        assert resp.status == 201, other_language
    assert first["id"] == same["id"] == other_language["id"]
    assert first["locale"] == same["locale"] == other_language["locale"] == "de"
    cur = await conn.execute("SELECT count(*), min(locale) FROM orders")
    assert await cur.fetchall() == [(1, "de")]
