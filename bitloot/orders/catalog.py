"""The catalog: which Kinguin products we sell, at what price, and the most we pay for them."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

import psycopg
from psycopg.rows import class_row
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from bitloot.db.queries import QuerySet

Q = QuerySet("bitloot.orders")

Money = Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=2)]


class ProductInput(BaseModel):
    """A catalog row as an operator gives it."""

    model_config = ConfigDict(frozen=True)

    product_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    name: Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
    price: Money
    currency: Annotated[str, StringConstraints(to_lower=True, pattern=r"^[a-z]{3}$")]
    max_cost: Money
    text_only: bool = True
    active: bool = True

    @field_validator("currency", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


class Product(BaseModel):
    """A catalog row as stored."""

    product_id: str
    name: str
    price: Decimal
    currency: str
    max_cost: Decimal
    text_only: bool
    active: bool


async def upsert_product(conn: psycopg.AsyncConnection[Any], product: ProductInput) -> Product:
    """Add a product, or update every field of an existing one (idempotent on product id)."""
    async with conn.cursor(row_factory=class_row(Product)) as cur:
        await cur.execute(Q["upsert_product"], product.model_dump())
        row = await cur.fetchone()
    assert row is not None
    return row


async def list_products(conn: psycopg.AsyncConnection[Any]) -> list[Product]:
    """Every catalog row, active or not."""
    async with conn.cursor(row_factory=class_row(Product)) as cur:
        await cur.execute(Q["list_products"])
        return await cur.fetchall()


async def products_by_ids(conn: psycopg.AsyncConnection[Any], ids: list[str]) -> dict[str, Product]:
    """The catalog rows with these ids, by id (missing ids are simply absent)."""
    async with conn.cursor(row_factory=class_row(Product)) as cur:
        await cur.execute(Q["products_by_ids"], {"ids": ids})
        return {p.product_id: p for p in await cur.fetchall()}
