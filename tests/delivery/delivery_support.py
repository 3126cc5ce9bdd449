"""Shared by the delivery tests: a real SMTP server, a pool, the Resources the send task
runs with, an order with two products, and helpers to read what was sent."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller
from psycopg_pool import AsyncConnectionPool

from bitloot.config import Settings
from bitloot.db.connect import open_pool
from bitloot.mail import SmtpTransport
from bitloot.processes import free_port
from bitloot.resources import Resources, token_verifier
from bitloot.storage import storage_from_url
from bitloot.vault.crypto import LOCAL_URL_PURPOSE, MasterKeyRing, generate_master_key

Conn = psycopg.AsyncConnection[Any]


@dataclass
class Recorder:
    """An aiosmtpd handler that keeps every message it accepts."""

    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"


@dataclass
class SmtpServer:
    port: int
    handler: Recorder = field(default_factory=Recorder)
    controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """An SMTP server on a free port, not started: tests start it when they want it up."""
    server = SmtpServer(port=free_port())
    yield server
    server.stop()


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[AsyncConnectionPool]:
    p = open_pool(db_url, min_size=1, max_size=4)
    await p.open(wait=True)
    yield p
    await p.close()


@pytest.fixture
def runtime(pool: AsyncConnectionPool, smtp: SmtpServer, tmp_path: Path) -> Resources:
    settings = Settings(data_dir=tmp_path, public_url="https://shop.example")
    ring = MasterKeyRing.parse(generate_master_key("k1"))
    return Resources(
        pool=pool,
        settings=settings,
        ring=ring,
        storage=storage_from_url(
            f"file://{tmp_path}/objects",
            public_url=settings.public_url,
            signing_keys=ring.derived_keys(LOCAL_URL_PURPOSE),
        ),
        tokens=token_verifier(settings),
        mail=SmtpTransport.from_url(f"smtp://127.0.0.1:{smtp.port}", timeout=5),
    )


async def make_order(
    conn: Conn, email: str = "buyer@example.com", *, locale: str = "en"
) -> uuid.UUID:
    """An order of two products (Portal on Steam, two Hades keys on GOG) in `locale`; its
    lines carry the snapshot the emails show."""
    await conn.execute(
        "INSERT INTO products (product_id, name, price, currency, max_cost)"
        " VALUES ('p-portal', 'Portal <2>', 9.99, 'eur', 5.00),"
        "        ('p-hades', 'Hades', 19.99, 'eur', 12.00)"
        " ON CONFLICT DO NOTHING"
    )
    cur = await conn.execute(
        "INSERT INTO orders (email, currency, total_amount, locale)"
        " VALUES (%s, 'eur', 39.97, %s) RETURNING id",
        (email, locale),
    )
    row = await cur.fetchone()
    assert row is not None
    order_id: uuid.UUID = row[0]
    await conn.execute(
        "INSERT INTO order_items (order_id, product_id, qty, unit_price, max_cost, name,"
        " platform, regional_limitations, excluded_countries)"
        " VALUES (%s, 'p-portal', 1, 9.99, 5.00, 'Portal <2>', 'Steam', 'REGION FREE', '{}'),"
        "        (%s, 'p-hades', 2, 19.99, 12.00, 'Hades', 'GOG COM', 'EUROPE', '{CH}')",
        (order_id, order_id),
    )
    return order_id


async def outbox_row(conn: Conn, outbox_id: int) -> dict[str, Any]:
    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    await cur.execute("SELECT * FROM email_outbox WHERE id = %s", (outbox_id,))
    row = await cur.fetchone()
    assert row is not None
    return row


async def token_purposes(conn: Conn, order_id: uuid.UUID) -> list[str]:
    cur = await conn.execute(
        "SELECT purpose FROM order_access_tokens WHERE order_id = %s ORDER BY created_at",
        (order_id,),
    )
    return [purpose for (purpose,) in await cur.fetchall()]


def emailed_token(message: EmailMessage) -> str:
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    link = re.search(r"/key\?lang=[a-z]{2}#token=(\S+)", text.get_content())
    assert link is not None
    return link[1]
