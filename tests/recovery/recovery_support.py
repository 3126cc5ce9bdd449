"""Orders as `POST /orders/recover` sees them, built in SQL (the state machine's legal
moves, with the evidence it asks for), and the API served with the recovery settings a test
needs."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import psycopg
from harness import ACCEPTED_PAYMENT, Served, serve_app

from bitloot.config import Settings
from bitloot.server import build_app
from bitloot.storage.base import ObjectStorage, object_key_for
from bitloot.vault.crypto import MasterKeyRing, seal_key

Conn = psycopg.AsyncConnection[Any]

RECOVER = "/orders/recover"
KEY = "AAAAA-BBBBB-CCCCC"
ACCEPTED_BODY = {
    "status": "accepted",
    "detail": "If this address has orders, an email with fresh links is on its way.",
}


@asynccontextmanager
async def served_api(
    make_settings: Callable[..., Settings], port: int, **overrides: object
) -> AsyncIterator[Served]:
    """`bitloot serve`'s application on `port`, with these settings changed."""
    served = await serve_app(await build_app(make_settings(**overrides)), port)
    try:
        yield served
    finally:
        await served.runner.cleanup()


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: Any
    seconds: float


async def recover(http: aiohttp.ClientSession, api_url: str, body: Any, **kw: Any) -> Answer:
    """POST /orders/recover with `body` (JSON, or raw bytes/str as given)."""
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    headers = {"Content-Type": "application/json", **kw.pop("headers", {})}
    started = time.monotonic()
    async with http.post(f"{api_url}{RECOVER}", data=data, headers=headers, **kw) as resp:
        raw = await resp.read()
        seconds = time.monotonic() - started
        parsed = json.loads(raw) if raw else None
        return Answer(resp.status, dict(resp.headers), parsed, seconds)


async def _order(conn: Conn, email: str) -> uuid.UUID:
    cur = await conn.execute(
        "INSERT INTO orders (email, currency, total_amount) VALUES (%s, 'eur', 14.99) RETURNING id",
        (email,),
    )
    row = await cur.fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


async def paid_order(conn: Conn, email: str) -> uuid.UUID:
    order_id = await _order(conn, email)
    await conn.execute("UPDATE orders SET status = 'waiting' WHERE id = %s", (order_id,))
    await conn.execute(ACCEPTED_PAYMENT, (order_id,))
    await conn.execute("UPDATE orders SET status = 'paid' WHERE id = %s", (order_id,))
    return order_id


async def fulfilled_order(
    conn: Conn,
    ring: MasterKeyRing,
    email: str,
    *,
    key_status: str = "stored",
    expires_in: str = "30 days",
    revoked: str | None = None,
    storage: ObjectStorage | None = None,
) -> uuid.UUID:
    """A fulfilled order with one key (`KEY`, sealed under `ring`; its row `key_status`,
    expiring in `expires_in`, revoked for `revoked` when given; its ciphertext in `storage`
    when given) and its delivery email sent."""
    order_id = await paid_order(conn, email)
    await conn.execute(
        "UPDATE orders SET fulfillment_status = 'processing' WHERE id = %s", (order_id,)
    )
    sealed = seal_key(KEY.encode(), order_id=order_id, key_id="key-1", ring=ring)
    object_key = object_key_for(order_id, "key-1")
    if storage is not None:
        await storage.put(
            object_key, sealed.blob, content_type="application/octet-stream", metadata={}
        )
    await conn.execute(
        "INSERT INTO key_delivery_logs (order_id, key_id, product_id, object_key, content_type,"
        " wrapped_data_key, master_key_id, status, expires_at, revoked_at, revoked_reason)"
        " VALUES (%s, 'key-1', 'prod-1', %s, 'text/plain', %s, %s, %s,"
        " now() + %s::interval, CASE WHEN %s::text IS NULL THEN NULL ELSE now() END, %s)",
        (
            order_id,
            object_key,
            sealed.wrapped_data_key,
            sealed.master_key_id,
            key_status,
            expires_in,
            revoked,
            revoked,
        ),
    )
    await conn.execute(
        "UPDATE orders SET status = 'fulfilled', fulfillment_status = 'fulfilled' WHERE id = %s",
        (order_id,),
    )
    await conn.execute(
        "INSERT INTO email_outbox (order_id, kind, generation, to_address, status, attempts,"
        " sent_at) VALUES (%s, 'delivery', 1, %s, 'sent', 1, now())",
        (order_id, email),
    )
    return order_id


async def refunded_order(conn: Conn, ring: MasterKeyRing, email: str) -> uuid.UUID:
    """A fulfilled order, then refunded: its keys revoked."""
    order_id = await fulfilled_order(conn, ring, email)
    await conn.execute(
        "UPDATE key_delivery_logs SET revoked_at = now(), revoked_reason = 'refunded'"
        " WHERE order_id = %s",
        (order_id,),
    )
    await conn.execute("UPDATE orders SET status = 'refunded' WHERE id = %s", (order_id,))
    return order_id


async def rows(conn: Conn, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    cur = await conn.execute(sql, params)
    return list(await cur.fetchall())


async def requests_audit(conn: Conn) -> list[tuple[Any, ...]]:
    """(email, client_ip, outcome, order_count) of every recovery request, oldest first."""
    return await rows(
        conn,
        "SELECT email, host(client_ip), outcome, order_count FROM recovery_requests ORDER BY id",
    )


async def recovery_emails(conn: Conn) -> list[tuple[Any, ...]]:
    """(outbox id, to_address, recovery_request_id) of every recovery email."""
    return await rows(
        conn,
        "SELECT id, to_address, recovery_request_id FROM email_outbox"
        " WHERE kind = 'recovery' ORDER BY id",
    )


async def listed_orders(conn: Conn, request_id: int) -> set[uuid.UUID]:
    found = await rows(
        conn, "SELECT order_id FROM recovery_request_orders WHERE request_id = %s", request_id
    )
    return {r[0] for r in found}
