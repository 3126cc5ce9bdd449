"""Helpers of the delivery tests: a storefront's receiver (an aiohttp app on a free port
that checks every request with the `standardwebhooks` library), endpoints written in SQL
with a wrapped secret, the worker's resources, and a worker pass over the webhooks queue."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import procrastinate
import psycopg
from aiohttp import web
from harness import COVERING_PAYMENT, Served, bare_order, serve_app
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

import bitloot.fulfillment.tasks  # registers fulfill_order on queue_app
import bitloot.webhooks.tasks  # noqa: F401 - registers deliver_webhooks on queue_app
from bitloot.config import Settings
from bitloot.queue import WEBHOOKS_QUEUE, queue_app
from bitloot.resources import Resources, install, open_resources
from bitloot.vault.crypto import MasterKeyRing
from bitloot.webhooks.secrets import new_secret, to_whsec, wrap

Conn = psycopg.AsyncConnection[Any]


@dataclass
class Received:
    """One request the receiver got: its webhook-id, the parsed body, and which of the
    receiver's secrets verified it (by name; empty: none did)."""

    webhook_id: str
    body: dict[str, Any]
    raw: bytes
    headers: dict[str, str]
    verified_by: set[str]

    @property
    def type(self) -> str:
        return str(self.body["type"])

    @property
    def data(self) -> dict[str, Any]:
        return dict(self.body["data"])


@dataclass
class Receiver:
    """A storefront. `answers` are the statuses it gives, in turn (200 once they run out),
    each optionally with headers; `stall` seconds before the first answer."""

    secrets: dict[str, str]  # name -> whsec
    answers: list[int | tuple[int, dict[str, str]]] = field(default_factory=list)
    stall_first: float = 0.0
    received: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    served: Served | None = None

    @property
    def url(self) -> str:
        assert self.served is not None
        return f"{self.served.url}/hooks"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hooks", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        headers = dict(request.headers)
        verified = set()
        for name, whsec in self.secrets.items():
            try:
                Webhook(whsec).verify(raw, headers)
            except WebhookVerificationError:
                continue
            verified.add(name)
        first = not self.received
        self.received.append(
            Received(
                webhook_id=headers.get("webhook-id", ""),
                body=json.loads(raw),
                raw=raw,
                headers=headers,
                verified_by=verified,
            )
        )
        self.arrived.set()
        if first and self.stall_first:
            await asyncio.sleep(self.stall_first)
        answer = self.answers.pop(0) if self.answers else 200
        status, extra = answer if isinstance(answer, tuple) else (answer, {})
        return web.Response(status=status, headers=extra, text="ok")

    def all_verified(self, *names: str) -> bool:
        """Every request verified with each of `names` (all the secrets when none given)."""
        wanted = set(names or self.secrets)
        return all(wanted <= r.verified_by for r in self.received)

    def seen(self) -> list[tuple[str, str, str]]:
        """(webhook-id, type, order id) of every request, in arrival order."""
        return [(r.webhook_id, r.type, r.data["orderId"]) for r in self.received]


@asynccontextmanager
async def receiving(**kwargs: Any) -> AsyncIterator[Receiver]:
    """A receiver served on a free loopback port while the block runs."""
    receiver = Receiver(**kwargs)
    receiver.served = await serve_app(receiver.app())
    try:
        yield receiver
    finally:
        await receiver.served.runner.cleanup()


async def add_endpoint(
    conn: Conn,
    ring: MasterKeyRing,
    url: str,
    *,
    events: Iterable[str] | None = None,
) -> tuple[uuid.UUID, str]:
    """An endpoint row with a current secret wrapped by `ring`: (id, whsec)."""
    cur = await conn.execute(
        "INSERT INTO webhook_endpoints (url, event_types, created_by) VALUES (%s, %s, 'test')"
        " RETURNING id",
        (url, list(events) if events is not None else None),
    )
    row = await cur.fetchone()
    assert row is not None
    endpoint_id: uuid.UUID = row[0]
    secret = new_secret()
    wrapped = wrap(ring, endpoint_id, secret)
    await conn.execute(
        "INSERT INTO webhook_endpoint_secrets (endpoint_id, wrapped, master_key_id)"
        " VALUES (%s, %s, %s)",
        (endpoint_id, wrapped.wrapped, wrapped.master_key_id),
    )
    return endpoint_id, to_whsec(secret)


async def rotate_in_sql(
    conn: Conn, ring: MasterKeyRing, endpoint_id: uuid.UUID, overlap_seconds: float
) -> str:
    """What a rotation stores: the current secret expires after the overlap, a new one is
    current. The new whsec."""
    await conn.execute(
        "UPDATE webhook_endpoint_secrets SET expires_at = now() + make_interval(secs => %s)"
        " WHERE endpoint_id = %s AND expires_at IS NULL",
        (overlap_seconds, endpoint_id),
    )
    secret = new_secret()
    wrapped = wrap(ring, endpoint_id, secret)
    await conn.execute(
        "INSERT INTO webhook_endpoint_secrets (endpoint_id, wrapped, master_key_id)"
        " VALUES (%s, %s, %s)",
        (endpoint_id, wrapped.wrapped, wrapped.master_key_id),
    )
    return to_whsec(secret)


@asynccontextmanager
async def worker_resources(
    make_settings: Callable[..., Settings], **overrides: Any
) -> AsyncIterator[Resources]:
    """What `bitloot worker` opens (allowing loopback receivers unless told otherwise)."""
    overrides.setdefault("webhook_allow_private_urls", True)
    async with AsyncExitStack() as stack:
        yield await open_resources(make_settings(**overrides), stack, kinguin=True)


async def run_jobs(res: Resources, queues: Iterable[str] = (WEBHOOKS_QUEUE,)) -> None:
    """Run every due job of `queues` as `bitloot worker` would, and return when none is
    left (jobs are kept, to be inspected)."""
    with queue_app.replace_connector(procrastinate.PsycopgConnector()):
        async with queue_app.open_async(res.pool):
            install(res)
            try:
                await queue_app.run_worker_async(
                    queues=list(queues),
                    wait=False,
                    install_signal_handlers=False,
                    delete_jobs="never",
                )
            finally:
                install(None)


async def make_due(conn: Conn) -> None:
    """Move every pending delivery's next attempt, and every waiting webhooks job, to now:
    the schedule's wait, without waiting."""
    await conn.execute(
        "UPDATE webhook_deliveries SET next_attempt_at = now() WHERE status = 'pending'"
    )
    await conn.execute(
        "UPDATE procrastinate_jobs SET scheduled_at = now()"
        " WHERE queue_name = 'webhooks' AND status = 'todo' AND scheduled_at > now()"
    )


async def order_with_events(conn: Conn, *statuses: str) -> uuid.UUID:
    """An order moved through `statuses` in SQL (each a transaction): paid, fulfilled, ...
    Each move writes its event(s) for the endpoints that exist at that moment."""
    order_id = await bare_order(conn)
    await conn.execute("UPDATE orders SET status = 'waiting' WHERE id = %s", (order_id,))
    for status in statuses:
        if status == "paid":
            await conn.execute(COVERING_PAYMENT, (order_id,))
        if status == "fulfilled":  # an order is fulfilled together with its fulfillment
            await conn.execute(
                "UPDATE orders SET fulfillment_status = 'processing' WHERE id = %s", (order_id,)
            )
            await conn.execute(
                "UPDATE orders SET status = 'fulfilled', fulfillment_status = 'fulfilled'"
                " WHERE id = %s",
                (order_id,),
            )
            continue
        await conn.execute("UPDATE orders SET status = %s WHERE id = %s", (status, order_id))
    return order_id


async def rows(conn: Conn, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    cur = await conn.execute(sql, params)
    return await cur.fetchall()


async def scalar(conn: Conn, sql: str, *params: Any) -> Any:
    cur = await conn.execute(sql, params)
    row = await cur.fetchone()
    assert row is not None, sql
    return row[0]
