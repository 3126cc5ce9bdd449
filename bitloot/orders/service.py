"""Order creation and lookup. Functions take the caller's connection and never commit."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from bitloot.auth.tokens import Principal
from bitloot.db.queries import QuerySet
from bitloot.orders.catalog import Product, products_by_ids
from bitloot.orders.models import CreateOrderIn, OrderItemOut, OrderOut

Q = QuerySet("bitloot.orders")


class OrderRejected(Exception):
    """The order cannot be made as asked; `problems` say why, each with its location."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(problems)} problem(s) with the order")
        self.problems = problems


@dataclass(frozen=True)
class PricedLine:
    """One order line priced from the catalog."""

    product: Product
    qty: int

    @property
    def amount(self) -> Decimal:
        return self.product.price * self.qty


@dataclass(frozen=True)
class PricedOrder:
    """An order priced on the server: every line in one currency."""

    lines: list[PricedLine]
    currency: str

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal("0"))


async def price_order(conn: psycopg.AsyncConnection[Any], body: CreateOrderIn) -> PricedOrder:
    """Price the order from `products`; every problem at once in `OrderRejected`."""
    catalog, problems = await _check_products(
        conn, [(index, item.productId) for index, item in enumerate(body.items)]
    )
    if problems:
        raise OrderRejected(problems)
    lines = [PricedLine(catalog[item.productId], item.qty) for item in body.items]
    return PricedOrder(lines=lines, currency=lines[0].product.currency)


async def product_problems(
    conn: psycopg.AsyncConnection[Any], named: list[tuple[int, str]]
) -> list[dict[str, Any]]:
    """The catalog problems of `(item index, productId)` pairs, for a body that failed
    validation elsewhere: the client then learns every problem in one answer."""
    _, problems = await _check_products(conn, named)
    return problems


async def _check_products(
    conn: psycopg.AsyncConnection[Any], named: list[tuple[int, str]]
) -> tuple[dict[str, Product], list[dict[str, Any]]]:
    catalog = await products_by_ids(conn, [product_id for _, product_id in named])
    problems: list[dict[str, Any]] = []
    seen: set[str] = set()
    currencies: set[str] = set()
    for index, product_id in named:
        loc = ["body", "items", index, "productId"]
        if product_id in seen:
            problems.append({"loc": loc, "msg": "product listed twice; use qty instead"})
            continue
        seen.add(product_id)
        product = catalog.get(product_id)
        if product is None or not product.active:
            problems.append({"loc": loc, "msg": "unknown or unavailable product"})
            continue
        currencies.add(product.currency)
    if len(currencies) > 1:
        problems.append(
            {"loc": ["body", "items"], "msg": "products are priced in different currencies"}
        )
    return catalog, problems


async def insert_order(
    conn: psycopg.AsyncConnection[Any],
    *,
    priced: PricedOrder,
    email: str,
    user_id: str | None,
    idempotency_key: str | None,
) -> tuple[uuid.UUID, bool]:
    """Insert the order and its lines in `created`; (id, False) if the key was already used."""
    cur = await conn.execute(
        Q["insert_order"],
        {
            "user_id": user_id,
            "email": email,
            "currency": priced.currency,
            "total_amount": priced.total,
            "idempotency_key": idempotency_key,
        },
    )
    row = await cur.fetchone()
    if row is None:  # the same Idempotency-Key was used before: that order is the answer
        cur = await conn.execute(Q["order_by_idempotency_key"], {"key": idempotency_key})
        existing = await cur.fetchone()
        assert existing is not None
        return existing[0], False
    order_id: uuid.UUID = row[0]
    async with conn.cursor() as items:
        await items.executemany(
            Q["insert_order_item"],
            [
                {
                    "order_id": order_id,
                    "product_id": line.product.product_id,
                    "qty": line.qty,
                    "unit_price": line.product.price,
                    "max_cost": line.product.max_cost,
                }
                for line in priced.lines
            ],
        )
    return order_id, True


async def record_invoice(
    conn: psycopg.AsyncConnection[Any], order_id: uuid.UUID, invoice_id: str, invoice_url: str
) -> bool:
    """Attach the NOWPayments invoice and move `created -> waiting`; False if not `created`."""
    cur = await conn.execute(
        Q["record_invoice"],
        {"order_id": order_id, "invoice_id": invoice_id, "invoice_url": invoice_url},
    )
    return await cur.fetchone() is not None


async def record_invoice_error(
    conn: psycopg.AsyncConnection[Any], order_id: uuid.UUID, error: str
) -> None:
    """Note why the invoice could not be created; the order stays `created`."""
    await conn.execute(Q["record_invoice_error"], {"order_id": order_id, "error": error})


@dataclass(frozen=True)
class StoredOrder:
    """An order as read back, with who owns it (for access checks)."""

    view: OrderOut
    user_id: str | None
    invoice_error: str | None


@dataclass(frozen=True)
class Access:
    """Who asks: the ownership test is part of the query, not a check after it."""

    is_admin: bool = False
    user_id: str | None = None
    token_order_id: uuid.UUID | None = None

    @classmethod
    def of(cls, principal: Principal) -> Access:
        """The access a verified principal has."""
        if principal.kind == "admin":
            return cls(is_admin=True, user_id=principal.subject)
        if principal.kind == "order_token":
            return cls(token_order_id=principal.order_id)
        return cls(user_id=principal.subject)


async def get_order(
    conn: psycopg.AsyncConnection[Any], order_id: uuid.UUID, access: Access
) -> StoredOrder | None:
    """The order with its lines, or None when it does not exist or `access` may not see it."""
    params = {
        "order_id": order_id,
        "is_admin": access.is_admin,
        "user_id": access.user_id,
        "token_order_id": access.token_order_id,
    }
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["get_order"], params)
        row = await cur.fetchone()
    if row is None:
        return None
    view = order_out(row)
    return StoredOrder(view=view, user_id=row["user_id"], invoice_error=row["invoice_error"])


def order_out(row: dict[str, Any]) -> OrderOut:
    """The API view of an order row read by `get_order` or the order list."""
    return OrderOut(
        id=row["id"],
        email=row["email"],
        status=row["status"],
        fulfillmentStatus=row["fulfillment_status"],
        statusReason=row["status_reason"] or row["fulfillment_error"],
        totalAmount=row["total_amount"],
        currency=row["currency"],
        invoiceUrl=row["invoice_url"],
        items=[OrderItemOut.model_validate(i) for i in row["items"]],
        paidAt=row["paid_at"],
        fulfilledAt=row["fulfilled_at"],
        createdAt=row["created_at"],
        updatedAt=row["updated_at"],
    )
