"""The orders domain's queries (`queries.sql`): one function per statement, no rules.

Every function takes the caller's connection and never commits; `service` owns the rules.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import class_row, dict_row

from bitloot.db.queries import QuerySet
from bitloot.orders.models import Product, ProductInput

Q = QuerySet("bitloot.orders")
Conn = psycopg.AsyncConnection[Any]


async def upsert_product(conn: Conn, product: ProductInput) -> Product:
    """Add a product, or update every field of an existing one (idempotent on product id)."""
    async with conn.cursor(row_factory=class_row(Product)) as cur:
        await cur.execute(Q["upsert_product"], product.model_dump())
        row = await cur.fetchone()
    assert row is not None
    return row


async def products_by_ids(conn: Conn, ids: list[str]) -> dict[str, Product]:
    """The catalog rows with these ids, by id (missing ids are simply absent)."""
    async with conn.cursor(row_factory=class_row(Product)) as cur:
        await cur.execute(Q["products_by_ids"], {"ids": ids})
        return {p.product_id: p for p in await cur.fetchall()}


async def insert_order(
    conn: Conn,
    *,
    order_id: uuid.UUID,
    user_id: str | None,
    email: str,
    currency: str,
    total: Decimal,
    locale: str,
) -> None:
    """Insert an order in `created` under `order_id`."""
    await conn.execute(
        Q["insert_order"],
        {
            "id": order_id,
            "user_id": user_id,
            "email": email,
            "currency": currency,
            "total_amount": total,
            "locale": locale,
        },
    )


@dataclass(frozen=True)
class NewLine:
    """An order line as priced: the product, how many keys, our price and the most we pay."""

    product_id: str
    qty: int
    unit_price: Decimal
    max_cost: Decimal


async def insert_order_items(conn: Conn, order_id: uuid.UUID, lines: list[NewLine]) -> None:
    """Insert the order's lines, each with its product's name and facts copied from
    `products` in the same statement (the customer's snapshot)."""
    cur = await conn.execute(
        Q["insert_order_items"],
        {
            "order_id": order_id,
            "product_ids": [line.product_id for line in lines],
            "qtys": [line.qty for line in lines],
            "unit_prices": [line.unit_price for line in lines],
            "max_costs": [line.max_cost for line in lines],
        },
    )
    if cur.rowcount != len(lines):  # every product was just read: it cannot be missing
        raise RuntimeError("an order line's product is not in the catalog")


async def claim_idempotency_key(
    conn: Conn, *, scope: str, key: str, fingerprint: bytes, order_id: uuid.UUID
) -> bool:
    """Record that (`scope`, `key`) makes `order_id`; False when the key is in use (made an
    order in the last 24 hours), whose row then stays locked for this transaction."""
    cur = await conn.execute(
        Q["claim_idempotency_key"],
        {"scope": scope, "key": key, "fingerprint": fingerprint, "order_id": order_id},
    )
    return await cur.fetchone() is not None


async def idempotency_key_in_use(conn: Conn, scope: str, key: str) -> bool:
    """Whether (`scope`, `key`) made an order in the last 24 hours (a read, no lock)."""
    cur = await conn.execute(Q["idempotency_key_in_use"], {"scope": scope, "key": key})
    return await cur.fetchone() is not None


async def idempotency_key_order(conn: Conn, scope: str, key: str) -> tuple[uuid.UUID, bytes]:
    """The order a key in use made, and the fingerprint of the request that made it."""
    cur = await conn.execute(Q["idempotency_key_order"], {"scope": scope, "key": key})
    row = await cur.fetchone()
    if row is None:  # rows are never deleted, and the caller saw this one conflict
        raise RuntimeError("idempotency key neither claimed nor found")
    return row[0], bytes(row[1])


async def record_invoice(
    conn: Conn, order_id: uuid.UUID, invoice_id: str, invoice_url: str
) -> bool:
    """Attach the invoice and move `created -> waiting`; False if not `created`."""
    cur = await conn.execute(
        Q["record_invoice"],
        {"order_id": order_id, "invoice_id": invoice_id, "invoice_url": invoice_url},
    )
    return await cur.fetchone() is not None


async def record_invoice_error(conn: Conn, order_id: uuid.UUID, error: str) -> None:
    """Note why the invoice could not be created; the order stays `created`."""
    await conn.execute(Q["record_invoice_error"], {"order_id": order_id, "error": error})


async def visible_order(conn: Conn, order_id: uuid.UUID, visibility: dict[str, Any]) -> Any:
    """The order row with its lines (`dict`), or None when missing or not visible."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["get_order"], {"order_id": order_id, **visibility})
        return await cur.fetchone()


async def user_orders_page(
    conn: Conn, user_id: str, after: tuple[Any, Any], limit: int
) -> list[dict[str, Any]]:
    """Up to `limit` of the user's order rows strictly before `after` (created_at, id)."""
    params = {
        "user_id": user_id,
        "after_created_at": after[0],
        "after_id": after[1],
        "limit": limit,
    }
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["list_user_orders"], params)
        return await cur.fetchall()


async def move_order_status(
    conn: Conn, order_id: uuid.UUID, from_statuses: list[str], to_status: str, reason: str | None
) -> bool:
    """`UPDATE ... WHERE status = ANY(from)`; False when the order was in none of them."""
    cur = await conn.execute(
        Q["move_order_status"],
        {
            "order_id": order_id,
            "to_status": to_status,
            "reason": reason,
            "from_statuses": from_statuses,
        },
    )
    return await cur.fetchone() is not None


async def expire_abandoned_orders(conn: Conn) -> int:
    """Expire orders never invoiced or never paid in time; how many."""
    cur = await conn.execute(Q["expire_abandoned_orders"])
    return len(await cur.fetchall())
