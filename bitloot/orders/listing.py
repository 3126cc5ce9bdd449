"""`GET /orders`: a customer's own orders, newest first, keyset-paginated.

The cursor is opaque to clients: base64url (no padding) of the JSON pair
`["<created_at, ISO 8601 with offset>", "<order id>"]` of the last order on the page. The
next page holds the orders strictly older in (created_at, id) order, so orders created
while a client pages never shift the pages it has not read yet.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from pydantic import BaseModel

from bitloot.db.queries import QuerySet
from bitloot.orders.models import OrderOut
from bitloot.orders.service import order_out

Q = QuerySet("bitloot.orders")

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
_MAX_CURSOR_CHARS = 200
_FIRST_PAGE = ("infinity", uuid.UUID(int=(1 << 128) - 1))


class OrderPageOut(BaseModel):
    """`GET /orders` response: one page, and the cursor of the next (None on the last)."""

    items: list[OrderOut]
    nextCursor: str | None


class BadCursor(ValueError):
    """The cursor is not one this API issued."""


def encode_cursor(created_at: datetime, order_id: uuid.UUID) -> str:
    """The cursor that continues after the order (`created_at`, `order_id`)."""
    raw = json.dumps([created_at.isoformat(), str(order_id)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (created_at, id) pair in a cursor; `BadCursor` when it is not one of ours."""
    if not cursor or len(cursor) > _MAX_CURSOR_CHARS or not cursor.isascii():
        raise BadCursor("malformed cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, order_id = json.loads(raw)
        created_at = datetime.fromisoformat(created)
        pair = (created_at, uuid.UUID(order_id))
    except (binascii.Error, ValueError, TypeError, AttributeError):
        raise BadCursor("malformed cursor") from None
    if created_at.tzinfo is None:
        raise BadCursor("malformed cursor")
    return pair


async def list_user_orders(
    conn: psycopg.AsyncConnection[Any],
    user_id: str,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> OrderPageOut:
    """One page of `user_id`'s orders, newest first, after the cursor position `after`."""
    after_created_at, after_id = after or _FIRST_PAGE
    params = {
        "user_id": user_id,
        "after_created_at": after_created_at,
        "after_id": after_id,
        "limit": limit + 1,  # one more than asked says whether a next page exists
    }
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["list_user_orders"], params)
        rows = await cur.fetchall()
    page = rows[:limit]
    next_cursor = (
        encode_cursor(page[-1]["created_at"], page[-1]["id"]) if len(rows) > limit else None
    )
    return OrderPageOut(items=[order_out(row) for row in page], nextCursor=next_cursor)
