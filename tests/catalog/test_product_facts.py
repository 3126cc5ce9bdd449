"""What the catalog keeps of Kinguin's product for the customer (platform, region, excluded
countries, cover image, pre-order and release date): stored from every read of
GET /v2/products/{id} (an order's stock check, the periodic refresh), replaced by the next
read, shown by GET /products, and made to fit (or dropped) when Kinguin says something
malformed, without ever failing the read."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import aiohttp
import pytest
from catalog_support import MIXED, TEXT, Conn, KinguinSim, one_row, post_order, refresh
from harness import Served

from bitloot.catalog.facts import facts_of
from bitloot.config import Settings
from bitloot.kinguin.models import Product
from bitloot.sim.kinguin_catalog import IMAGES, SOLD_OUT_PRODUCT_ID

FACTS = (
    "SELECT platform, regional_limitations, excluded_countries, image_url, is_preorder,"
    " release_date FROM products WHERE product_id = %s"
)


async def test_an_orders_stock_check_stores_what_kinguin_says_about_the_key(
    api: Served, catalog: None, conn: Conn, http: aiohttp.ClientSession
) -> None:
    status, body, _ = await post_order(http, api, MIXED)
    assert status == 201, body
    assert await one_row(conn, FACTS, MIXED) == (
        "GOG COM",
        "EUROPE",
        ["CH", "GB", "NO"],
        f"{IMAGES}/cyberpunk-2077.jpg",
        False,
        date(2020, 12, 10),
    )


async def test_a_later_read_replaces_the_stored_facts(
    catalog: None, conn: Conn, kinguin: KinguinSim, make_settings: Callable[..., Settings]
) -> None:
    await refresh(make_settings)
    assert await one_row(conn, FACTS, TEXT) == (
        "Steam",
        "REGION FREE",
        [],
        f"{IMAGES}/stardew-valley.jpg",
        False,
        date(2016, 2, 26),
    )
    await kinguin.change(
        TEXT,
        notify=False,
        platform="Epic Games",
        regional_limitations="EUROPE",
        country_limitation=["GB"],
        image_url=None,
        is_preorder=True,
        release_date="2027-03-01",
    )
    assert await refresh(make_settings) == {"read": 2, "failed": 0}
    assert await one_row(conn, FACTS, TEXT) == (
        "Epic Games",
        "EUROPE",
        ["GB"],
        None,
        True,
        date(2027, 3, 1),
    )


async def test_kinguins_404_for_a_sold_out_product_keeps_the_stored_facts(
    conn: Conn, make_settings: Callable[..., Settings]
) -> None:
    await conn.execute(
        "INSERT INTO products (product_id, name, price, currency, max_cost, platform,"
        " regional_limitations, excluded_countries, release_date)"
        " VALUES (%s, 'Sold out', 9.99, 'eur', 8, 'Steam', 'EUROPE', '{GB}', '2021-01-01')",
        (SOLD_OUT_PRODUCT_ID,),
    )
    assert await refresh(make_settings) == {"read": 1, "failed": 0}
    row = await one_row(
        conn,
        "SELECT kinguin_qty, checked_at IS NOT NULL FROM products WHERE product_id = %s",
        SOLD_OUT_PRODUCT_ID,
    )
    assert row == (0, True)  # the answer was stored: nothing in stock
    assert await one_row(conn, FACTS, SOLD_OUT_PRODUCT_ID) == (
        "Steam",
        "EUROPE",
        ["GB"],
        None,
        False,
        date(2021, 1, 1),
    )


async def test_malformed_facts_are_made_to_fit_or_dropped_and_the_read_still_counts(
    catalog: None, conn: Conn, kinguin: KinguinSim, make_settings: Callable[..., Settings]
) -> None:
    await kinguin.change(
        TEXT,
        notify=False,
        price="8.00",
        platform="P" * 150,  # the column holds 100
        regional_limitations="  EUROPE\x00 \n",
        country_limitation=["gb", "XYZ", " de ", 5, None, "GB", "1A", "ÄÖ"],
        image_url="http://insecure.example/cover.jpg",  # not https: never shown
        release_date="2027-02-30",  # no such day
    )
    await kinguin.change(MIXED, notify=False, country_limitation=None, raw_images="cover.jpg")
    assert await refresh(make_settings) == {"read": 2, "failed": 0}
    assert await one_row(conn, FACTS, TEXT) == (
        "P" * 100,
        "EUROPE",
        ["GB", "DE"],
        None,
        False,
        None,
    )
    assert await one_row(conn, FACTS, MIXED) == (
        "GOG COM",
        "EUROPE",
        [],
        None,
        False,
        date(2020, 12, 10),
    )
    price = await one_row(
        conn, "SELECT kinguin_price::text FROM products WHERE product_id = %s", TEXT
    )
    assert price == ("8.00",)


async def test_get_products_shows_the_facts_of_the_last_read(
    api: Served,
    catalog: None,
    http: aiohttp.ClientSession,
    kinguin: KinguinSim,
    make_settings: Callable[..., Settings],
) -> None:
    await kinguin.change(MIXED, notify=False, is_preorder=True, release_date="2027-03-01")
    await refresh(make_settings)
    async with http.get(f"{api.url}/products") as resp:
        assert resp.status == 200
        body = await resp.json()
    facts = {
        item["productId"]: {k: v for k, v in item.items() if k not in ("price", "name")}
        for item in body["items"]
    }
    assert facts == {
        MIXED: {
            "productId": MIXED,
            "currency": "eur",
            "availability": "in_stock",
            "available": True,
            "platform": "GOG COM",
            "regionalLimitations": "EUROPE",
            "excludedCountries": ["CH", "GB", "NO"],
            "imageUrl": f"{IMAGES}/cyberpunk-2077.jpg",
            "isPreorder": True,
            "releaseDate": "2027-03-01",
        },
        TEXT: {
            "productId": TEXT,
            "currency": "eur",
            "availability": "in_stock",
            "available": True,
            "platform": "Steam",
            "regionalLimitations": "REGION FREE",
            "excludedCountries": [],
            "imageUrl": f"{IMAGES}/stardew-valley.jpg",
            "isPreorder": False,
            "releaseDate": "2016-02-26",
        },
    }


def product(**fields: Any) -> Product:
    return Product.model_validate(
        {"kinguinId": 1, "productId": "p1", "name": "Game", "price": "9.99", "qty": 3} | fields
    )


@pytest.mark.parametrize(
    ("images", "expected"),
    [
        (
            {
                "cover": {
                    "url": "https://cdn.example/u.jpg",
                    "thumbnail": "https://cdn.example/t.jpg",
                }
            },
            "https://cdn.example/u.jpg",
        ),
        ({"cover": {"thumbnail": "https://cdn.example/t.jpg"}}, "https://cdn.example/t.jpg"),
        ({"cover": {"url": "https://user:secret@cdn.example/u.jpg"}}, None),
        ({"cover": {"url": "https://cdn.example/a b.jpg"}}, None),
        ({"cover": {"url": 'https://cdn.example/"><script>.jpg'}}, None),
        ({"cover": {"url": "HTTPS://cdn.example/u.jpg"}}, None),
        ({"cover": {"url": "https:///no-host.jpg"}}, None),
        ({"cover": {"url": "javascript:alert(1)"}}, None),
        ({"cover": {"url": "https://cdn.example/" + "a" * 2000}}, None),
        ({"cover": {"url": "https://cdn.example/bild-ä.jpg"}}, None),
        ({"cover": None, "screenshots": []}, None),
        ({"cover": ["https://cdn.example/u.jpg"]}, None),
        ("https://cdn.example/u.jpg", None),
        ([], None),
        (None, None),
    ],
)
def test_only_a_plain_https_cover_url_is_kept(images: Any, expected: str | None) -> None:
    assert facts_of(product(images=images)).image_url == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2027-03-01", date(2027, 3, 1)),
        ("2027-03-01T00:00:00+00:00", date(2027, 3, 1)),
        ("2027-02-30", None),
        ("01.03.2027", None),
        ("", None),
        (None, None),
        (20270301, None),
    ],
)
def test_a_release_date_is_kept_only_when_it_is_one(raw: Any, expected: date | None) -> None:
    assert facts_of(product(releaseDate=raw)).release_date == expected
