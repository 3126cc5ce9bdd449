"""The catalog's queries (`queries.sql`): one function per statement, no rules."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import class_row

from bitloot.catalog.facts import Facts
from bitloot.db.queries import QuerySet

Q = QuerySet("bitloot.catalog")
Conn = psycopg.AsyncConnection[Any]


@dataclass(frozen=True)
class StoredAnswer:
    """What Kinguin last said about a product, and how old that is."""

    product_id: str
    kinguin_price: Decimal | None
    kinguin_qty: int | None
    kinguin_text_qty: int | None
    fresh: bool
    usable: bool


@dataclass(frozen=True)
class CatalogRow:
    """A catalog row with Kinguin's last answer."""

    product_id: str
    name: str
    price: Decimal
    currency: str
    max_cost: Decimal
    text_only: bool
    active: bool
    kinguin_price: Decimal | None
    kinguin_qty: int | None
    kinguin_text_qty: int | None
    checked_at: datetime | None
    platform: str | None
    regional_limitations: str | None
    excluded_countries: list[str]
    image_url: str | None
    is_preorder: bool
    release_date: date | None


async def stored_answers(
    conn: Conn, ids: list[str], *, fresh_seconds: int, usable_seconds: int
) -> dict[str, StoredAnswer]:
    """The stored answers of these products, by id (unknown ids are absent)."""
    params = {"ids": ids, "fresh_seconds": fresh_seconds, "usable_seconds": usable_seconds}
    async with conn.cursor(row_factory=class_row(StoredAnswer)) as cur:
        await cur.execute(Q["stored_answers"], params)
        return {row.product_id: row for row in await cur.fetchall()}


async def record_answer(
    conn: Conn,
    product_id: str,
    *,
    price: Decimal | None,
    qty: int,
    text_qty: int | None,
    updated_at: datetime | None,
) -> None:
    """Store a read of the product (checked now)."""
    await conn.execute(
        Q["record_answer"],
        {
            "product_id": product_id,
            "price": price,
            "qty": qty,
            "text_qty": text_qty,
            "updated_at": updated_at,
        },
    )


async def record_facts(conn: Conn, product_id: str, facts: Facts) -> None:
    """Store what a read says the customer is told about the key."""
    params = asdict(facts) | {"product_id": product_id}
    params["excluded_countries"] = list(facts.excluded_countries)
    await conn.execute(Q["record_facts"], params)


async def lock_watermark(conn: Conn, product_id: str) -> tuple[bool, datetime | None]:
    """(whether we sell the product, its `kinguin_updated_at`) under `FOR UPDATE`."""
    cur = await conn.execute(Q["lock_watermark"], {"product_id": product_id})
    row = await cur.fetchone()
    return (False, None) if row is None else (True, row[0])


async def apply_update(
    conn: Conn,
    product_id: str,
    *,
    qty: int,
    text_qty: int | None,
    price: Decimal | None,
    updated_at: datetime,
) -> None:
    """Store a webhook's stock (and price) and advance the watermark to its `updated_at`."""
    await conn.execute(
        Q["apply_update"],
        {
            "product_id": product_id,
            "qty": qty,
            "text_qty": text_qty,
            "price": price,
            "updated_at": updated_at,
        },
    )


async def mark_unchecked(conn: Conn, product_id: str) -> None:
    """Make the next order read the product again."""
    await conn.execute(Q["mark_unchecked"], {"product_id": product_id})


async def active_product_ids(conn: Conn) -> list[str]:
    """Every active product, least recently checked first."""
    cur = await conn.execute(Q["active_product_ids"])
    return [row[0] for row in await cur.fetchall()]


async def catalog_rows(conn: Conn, *, active_only: bool) -> list[CatalogRow]:
    """The catalog with Kinguin's answers: active rows by name, or every row by id."""
    async with conn.cursor(row_factory=class_row(CatalogRow)) as cur:
        await cur.execute(Q["catalog_rows"], {"active_only": active_only})
        return await cur.fetchall()
