"""What admins read (queries only): payment pages, a payment with its IPNs, an order's
fulfillment timeline.

Functions take the caller's connection and never commit. Nothing here selects a key, a
data key or where a ciphertext is stored.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, LiteralString

import psycopg
from psycopg.rows import dict_row

from bitloot.admin.models import (
    AdminActionOut,
    DeliveredKeyOut,
    EmailOut,
    FulfillmentTimelineOut,
    IpnOut,
    KeyAccessOut,
    KinguinCallOut,
    KinguinOrderOut,
    OrderEventOut,
    PaymentDetailOut,
    PaymentListQuery,
    PaymentOut,
    PaymentPageOut,
    TimelineOrderOut,
    WebhookEventOut,
)
from bitloot.db.queries import QuerySet
from bitloot.web.cursor import Position, decode_cursor, encode_cursor

Q = QuerySet("bitloot.admin")
Conn = psycopg.AsyncConnection[Any]

# Bounds for an open end of the date range: real timestamps rather than +-infinity, so
# the parameters keep one type and the plan one shape.
_EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 12, 31, tzinfo=UTC)


async def read_from_one_snapshot(conn: Conn) -> None:
    """Make the transaction the caller just opened read-only REPEATABLE READ, so that a
    reply built from several queries shows one moment."""
    await conn.execute(Q["snapshot_read"])


def payments_page_query(query: PaymentListQuery) -> tuple[LiteralString, dict[str, Any]]:
    """The SQL and parameters for one page of `query` (one row more than the page, to tell
    whether another page follows). `InvalidCursor` when the cursor is not ours."""
    upper = Position(query.to, "") if query.to is not None else Position(_LATEST, "")
    if query.cursor is not None:
        upper = min(upper, decode_cursor(query.cursor))
    params: dict[str, Any] = {
        "from_at": query.from_ or _EARLIEST,
        "before_at": upper.created_at,
        "before_id": upper.id,
        "limit": query.limit + 1,
        "status": query.status,
        "email": query.email,
    }
    if query.email is not None:
        return Q["payments_page_by_email"], params
    if query.status is not None:
        return Q["payments_page_by_status"], params
    return Q["payments_page"], params


async def list_payments(conn: Conn, query: PaymentListQuery) -> PaymentPageOut:
    """One page of payments, newest first, with the cursor of the next page (or None)."""
    sql, params = payments_page_query(query)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, params)
        rows = await cur.fetchall()
    items = [_payment(row) for row in rows[: query.limit]]
    more = len(rows) > query.limit
    next_cursor = (
        encode_cursor(Position(items[-1].createdAt, items[-1].paymentId)) if more else None
    )
    return PaymentPageOut(items=items, nextCursor=next_cursor)


async def payment_detail(conn: Conn, payment_id: str) -> PaymentDetailOut | None:
    """The payment, its order's status and every stored IPN for it; None when unknown.
    Call it after `read_from_one_snapshot`."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["payment_detail"], {"payment_id": payment_id})
        row = await cur.fetchone()
        if row is None:
            return None
        await cur.execute(Q["payment_ipns"], {"payment_id": payment_id})
        ipns = [IpnOut.model_validate(_camel(r)) for r in await cur.fetchall()]
    return PaymentDetailOut.model_validate({**_camel(row), "ipns": ipns})


async def fulfillment_timeline(conn: Conn, order_id: uuid.UUID) -> FulfillmentTimelineOut | None:
    """Everything recorded about the order, each part oldest first; None when unknown.

    Call it after `read_from_one_snapshot`, so that every part shows the same moment.
    """
    async with conn.cursor(row_factory=dict_row) as cur:
        order = await _fetch(cur, "timeline_order", order_id)
        if not order:
            return None
        kinguin = await _fetch(cur, "timeline_kinguin_order", order_id)
        return FulfillmentTimelineOut(
            order=TimelineOrderOut.model_validate(order[0]),
            payments=[
                PaymentOut.model_validate(r)
                for r in await _fetch(cur, "timeline_payments", order_id)
            ],
            events=[
                OrderEventOut.model_validate(r)
                for r in await _fetch(cur, "timeline_events", order_id)
            ],
            kinguinOrder=KinguinOrderOut.model_validate(kinguin[0]) if kinguin else None,
            keys=[
                DeliveredKeyOut.model_validate(r)
                for r in await _fetch(cur, "timeline_keys", order_id)
            ],
            accessEvents=[
                KeyAccessOut.model_validate(r)
                for r in await _fetch(cur, "timeline_access_events", order_id)
            ],
            emails=[
                EmailOut.model_validate(r) for r in await _fetch(cur, "timeline_emails", order_id)
            ],
            webhookEvents=[
                WebhookEventOut.model_validate(r)
                for r in await _fetch(cur, "timeline_webhook_events", order_id)
            ],
            kinguinCalls=[
                KinguinCallOut.model_validate(r)
                for r in await _fetch(cur, "timeline_kinguin_calls", order_id)
            ],
            adminActions=[
                AdminActionOut.model_validate(r)
                for r in await _fetch(cur, "timeline_admin_actions", order_id)
            ],
        )


async def _fetch(
    cur: psycopg.AsyncCursor[dict[str, Any]], name: str, order_id: uuid.UUID
) -> list[dict[str, Any]]:
    """The rows of the timeline query `name`, keyed by response field names."""
    await cur.execute(Q[name], {"order_id": order_id})
    return [_camel(r) for r in await cur.fetchall()]


def _payment(row: dict[str, Any]) -> PaymentOut:
    return PaymentOut.model_validate(_camel(row))


def _camel(row: dict[str, Any]) -> dict[str, Any]:
    """`snake_case` columns as the `camelCase` fields of the response models."""
    return {_camel_name(k): v for k, v in row.items()}


def _camel_name(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
