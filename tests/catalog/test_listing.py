"""What the catalog shows: the public `GET /products` (no cost ever), `bitloot products list`
(everything, for operators), and the periodic job that keeps Kinguin's answers current."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
from catalog_support import MIXED, RETIRED, TEXT, Conn, KinguinSim, one_row, refresh
from harness import Served

from bitloot.config import Settings
from bitloot.queue import queue_app
from bitloot.sim.kinguin_catalog import SOLD_OUT_PRODUCT_ID


async def test_the_periodic_refresh_reads_every_active_product(
    catalog: None, conn: Conn, kinguin: KinguinSim, make_settings: Callable[..., Settings]
) -> None:
    await conn.execute(
        "INSERT INTO products (product_id, name, price, currency, max_cost)"
        " VALUES (%s, 'Sold out', 9.99, 'eur', 8)",
        (SOLD_OUT_PRODUCT_ID,),
    )
    await kinguin.change(MIXED, price="12.00", qty=8, text_qty=2, notify=False)
    assert await refresh(make_settings) == {"read": 3, "failed": 0}
    rows = await conn.execute(
        "SELECT product_id, kinguin_price::text, kinguin_qty, kinguin_text_qty,"
        " checked_at > now() - interval '1 minute' FROM products ORDER BY product_id"
    )
    assert sorted(await rows.fetchall()) == sorted(
        [
            (TEXT, "9.49", 500, 500, True),
            (MIXED, "12.00", 16, 4, True),  # both offers now cost 12.00: they are the cheapest
            (SOLD_OUT_PRODUCT_ID, None, 0, 0, True),
            (RETIRED, None, None, None, None),  # inactive: not read
        ]
    )
    assert await kinguin.reads(TEXT) == 1
    # Declared periodic, every 10 minutes, so every worker schedules it.
    periodic = queue_app.periodic_registry.periodic_tasks
    assert periodic[("refresh_catalog", "refresh_catalog")].cron == "*/10 * * * *"


async def test_get_products_lists_the_active_catalog_and_no_cost(
    api: Served, catalog: None, conn: Conn, http: aiohttp.ClientSession
) -> None:
    # Kinguin's answers as stored: the text product in stock at 9.49 (max_cost 12.00); the
    # mixed one only above its max_cost (15.00); nothing known of the third.
    await conn.execute(
        "UPDATE products SET kinguin_price = 9.49, kinguin_qty = 500, kinguin_text_qty = 500,"
        " checked_at = now(), platform = 'Steam', regional_limitations = 'REGION FREE',"
        " image_url = 'https://img.example/stardew.jpg', release_date = '2016-02-26'"
        " WHERE product_id = %s",
        (TEXT,),
    )
    await conn.execute(
        "UPDATE products SET kinguin_price = 15.37, kinguin_qty = 3, kinguin_text_qty = 0,"
        " checked_at = now(), platform = 'GOG COM', regional_limitations = 'EUROPE',"
        " excluded_countries = '{CH,GB}', is_preorder = true, release_date = '2027-03-01'"
        " WHERE product_id = %s",
        (MIXED,),
    )
    await conn.execute(
        "INSERT INTO products (product_id, name, price, currency, max_cost)"
        " VALUES ('5c9b00000000000000000new', 'Brand new', 5.00, 'eur', 3.33)"
    )
    async with http.get(f"{api.url}/products") as resp:  # no token
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "public, max-age=30"
        raw = await resp.text()
        body = await resp.json()
    assert body == {
        "items": [
            {
                "productId": "5c9b00000000000000000new",
                "name": "Brand new",
                "price": "5.00",
                "currency": "eur",
                "availability": "unknown",
                "available": False,
                "platform": None,  # Kinguin not read yet
                "regionalLimitations": None,
                "excludedCountries": [],
                "imageUrl": None,
                "isPreorder": False,
                "releaseDate": None,
            },
            {
                "productId": MIXED,
                "name": "Cyberpunk 2077",
                "price": "19.99",
                "currency": "eur",
                "availability": "out_of_stock",
                "available": False,
                "platform": "GOG COM",
                "regionalLimitations": "EUROPE",
                "excludedCountries": ["CH", "GB"],
                "imageUrl": None,
                "isPreorder": True,
                "releaseDate": "2027-03-01",
            },
            {
                "productId": TEXT,
                "name": "Stardew Valley",
                "price": "14.99",
                "currency": "eur",
                "availability": "in_stock",
                "available": True,
                "platform": "Steam",
                "regionalLimitations": "REGION FREE",
                "excludedCountries": [],
                "imageUrl": "https://img.example/stardew.jpg",
                "isPreorder": False,
                "releaseDate": "2016-02-26",
            },
        ]
    }
    for secret in ("9.49", "15.37", "12.00", "15.00", "3.33", "max", "kinguin", "cost"):
        assert secret not in raw.lower(), secret


def bitloot(*args: str, db_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BITLOOT_")}
    env["DATABASE_URL"] = db_url
    return subprocess.run(
        [sys.executable, "-m", "bitloot", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_products_list_shows_kinguin_price_stock_and_check_time(
    catalog: None, conn: Conn, db_url: str, tmp_path: Path
) -> None:
    await conn.execute(
        "UPDATE products SET kinguin_price = 12.90, kinguin_qty = 300, kinguin_text_qty = 150,"
        " checked_at = '2026-03-01T12:00:00Z' WHERE product_id = ANY(%s)",
        ([TEXT, MIXED],),
    )
    await conn.execute("UPDATE products SET platform = 'GOG COM' WHERE product_id = %s", (MIXED,))
    result = bitloot("products", "list", db_url=db_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split("  ", 1) for line in result.stdout.strip().splitlines())
    assert lines == {
        # text_only: only the text keys count as stock
        TEXT: "Stardew Valley  14.99 eur  max cost 12.00 eur  platform -  kinguin 12.90 eur"
        "  stock 150  checked 2026-03-01T12:00:00+00:00  active",
        MIXED: "Cyberpunk 2077  19.99 eur  max cost 15.00 eur  platform GOG COM"
        "  kinguin 12.90 eur  stock 300  checked 2026-03-01T12:00:00+00:00  active",
        RETIRED: "Old game  4.99 eur  max cost 4.00 eur  platform -  kinguin -  stock -"
        "  checked never  inactive",
    }
    row = await one_row(conn, "SELECT count(*) FROM products")
    assert row == (3,)
