"""The email outbox and the send task's logic, against real PostgreSQL and a real SMTP server."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import procrastinate
import psycopg
import pytest
from aiosmtpd.controller import Controller
from psycopg_pool import AsyncConnectionPool

from bitloot.auth.order_tokens import token_hash, verify
from bitloot.config import Settings
from bitloot.db.connect import open_pool
from bitloot.delivery import repository as outbox
from bitloot.delivery.service import queue_delivery_email, queue_delivery_resend
from bitloot.delivery.tasks import (
    MAX_SEND_ATTEMPTS,
    SEND_RETRY,
    deliver,
    send_delivery_email,
)
from bitloot.mail import MailError, RetryableMailError, SmtpTransport
from bitloot.processes import free_port
from bitloot.queue import EMAIL_QUEUE, queue_app
from bitloot.resources import Resources, install, token_verifier
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


async def make_order(conn: Conn, email: str = "buyer@example.com") -> uuid.UUID:
    await conn.execute(
        "INSERT INTO products (product_id, name, price, currency, max_cost)"
        " VALUES ('p-portal', 'Portal <2>', 9.99, 'eur', 5.00),"
        "        ('p-hades', 'Hades', 19.99, 'eur', 12.00)"
        " ON CONFLICT DO NOTHING"
    )
    cur = await conn.execute(
        "INSERT INTO orders (email, currency, total_amount) VALUES (%s, 'eur', 39.97) RETURNING id",
        (email,),
    )
    row = await cur.fetchone()
    assert row is not None
    order_id: uuid.UUID = row[0]
    await conn.execute(
        "INSERT INTO order_items (order_id, product_id, qty, unit_price, max_cost)"
        " VALUES (%s, 'p-portal', 1, 9.99, 5.00), (%s, 'p-hades', 2, 19.99, 12.00)",
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
    link = re.search(r"/key#token=(\S+)", text.get_content())
    assert link is not None
    return link[1]


@dataclass
class CommitLost:
    """SMTP accepts the message, then the database connection goes: the send transaction's
    COMMIT never happens, as in a crash right after the server's 250."""

    smtp: Any

    async def send(self, msg: EmailMessage) -> None:
        await self.smtp.send(msg)
        raise psycopg.OperationalError("server closed the connection unexpectedly")


async def test_create_twice_makes_one_row(conn: Conn) -> None:
    order_id = await make_order(conn)
    first = await outbox.create_delivery_email(conn, order_id, "buyer@example.com")
    second = await outbox.create_delivery_email(conn, order_id, "buyer@example.com")
    assert first == second
    cur = await conn.execute("SELECT count(*) FROM email_outbox WHERE order_id = %s", (order_id,))
    assert await cur.fetchone() == (1,)
    row = await outbox_row(conn, first)
    assert (row["generation"], row["status"], row["attempts"]) == (1, "pending", 0)


async def test_resend_adds_the_next_generation(conn: Conn) -> None:
    order_id = await make_order(conn)
    first = await outbox.create_delivery_email(conn, order_id, "buyer@example.com")
    second = await outbox.next_generation_for_resend(conn, order_id, "fixed@example.com")
    third = await outbox.next_generation_for_resend(conn, order_id, "fixed@example.com")
    assert len({first, second, third}) == 3
    assert (await outbox_row(conn, second))["generation"] == 2
    assert (await outbox_row(conn, third))["generation"] == 3
    assert (await outbox_row(conn, third))["to_address"] == "fixed@example.com"


async def test_claim_after_sent_returns_none(conn: Conn) -> None:
    order_id = await make_order(conn)
    outbox_id = await outbox.create_delivery_email(conn, order_id, "buyer@example.com")
    async with conn.transaction():
        row = await outbox.claim(conn, outbox_id)
        assert row is not None and row.order_id == order_id
        await outbox.mark_sent(conn, outbox_id, "<m@bitloot>")
    async with conn.transaction():
        assert await outbox.claim(conn, outbox_id) is None
    stored = await outbox_row(conn, outbox_id)
    assert (stored["status"], stored["message_id"], stored["attempts"]) == (
        "sent",
        "<m@bitloot>",
        1,
    )
    assert stored["sent_at"] is not None


async def test_claim_of_unknown_row_raises(conn: Conn) -> None:
    with pytest.raises(outbox.OutboxRowNotFound):
        async with conn.transaction():
            await outbox.claim(conn, 424242)


async def test_failed_attempts_count_and_final_marks_failed(conn: Conn) -> None:
    order_id = await make_order(conn)
    outbox_id = await outbox.create_delivery_email(conn, order_id, "buyer@example.com")
    assert await outbox.mark_attempt_failed(conn, outbox_id, "down\nagain", final=False) == 1
    row = await outbox_row(conn, outbox_id)
    assert (row["status"], row["last_error"]) == ("pending", "down again")
    assert await outbox.mark_attempt_failed(conn, outbox_id, "x" * 1000, final=True) == 2
    row = await outbox_row(conn, outbox_id)
    assert row["status"] == "failed"
    assert len(row["last_error"]) <= outbox.MAX_ERROR_LENGTH


async def test_product_names_for_the_email(conn: Conn) -> None:
    order_id = await make_order(conn)
    assert await outbox.delivery_product_names(conn, order_id) == ["Hades x2", "Portal <2>"]


async def test_deliver_twice_sends_exactly_once(
    conn: Conn, smtp: SmtpServer, runtime: Resources
) -> None:
    order_id = await make_order(conn)
    outbox_id = await outbox.create_delivery_email(conn, order_id, "buyer@example.com")
    smtp.start()
    assert await deliver(outbox_id, runtime) is True
    assert await deliver(outbox_id, runtime) is False
    assert len(smtp.handler.messages) == 1
    msg = smtp.handler.messages[0]
    assert msg["To"] == "buyer@example.com"
    assert msg["Subject"] == "Your BitLoot order is ready"
    text = msg.get_body(preferencelist=("plain",))
    assert text is not None
    link = re.search(
        r"https://shop\.example/orders/([0-9a-f-]+)/key#token=(\S+)", text.get_content()
    )
    assert link is not None and link[1] == str(order_id)
    # The link's token opens exactly this order, was issued for an email, is stored only
    # as its hash, and the second call (the row already sent) issued none.
    assert (await verify(conn, link[2])).order_id == order_id
    assert await token_purposes(conn, order_id) == ["email"]
    cur = await conn.execute("SELECT token_hash FROM order_access_tokens")
    assert [bytes(h) for (h,) in await cur.fetchall()] == [token_hash(link[2])]
    row = await outbox_row(conn, outbox_id)
    assert row["status"] == "sent"
    assert (
        row["message_id"]
        == msg["Message-ID"]
        == f"<delivery-{outbox_id}-{order_id}@bitloot.invalid>"
    )


async def test_concurrent_jobs_for_one_row_send_once(
    conn: Conn, smtp: SmtpServer, runtime: Resources
) -> None:
    order_id = await make_order(conn)
    outbox_id = await outbox.create_delivery_email(conn, order_id, "buyer@example.com")
    smtp.start()
    results = await asyncio.gather(*(deliver(outbox_id, runtime) for _ in range(3)))
    assert sorted(results) == [False, False, True]
    assert len(smtp.handler.messages) == 1


async def test_the_link_of_a_copy_whose_commit_was_lost_still_works(
    conn: Conn, smtp: SmtpServer, runtime: Resources
) -> None:
    order_id = await make_order(conn)
    outbox_id = await outbox.create_delivery_email(conn, order_id, "buyer@example.com")
    smtp.start()
    with pytest.raises(psycopg.OperationalError):
        await deliver(outbox_id, replace(runtime, mail=CommitLost(runtime.mail)))
    row = await outbox_row(conn, outbox_id)
    assert (row["status"], row["message_id"]) == ("pending", None)  # the send rolled back
    assert await deliver(outbox_id, runtime) is True  # the retried job

    first, second = smtp.handler.messages
    assert first["Message-ID"] == second["Message-ID"]  # recognisably one email, twice
    # The customer may read either copy: the token of the first was committed before the
    # send transaction began, so its rollback took nothing with it.
    for message in (first, second):
        assert (await verify(conn, emailed_token(message))).order_id == order_id
    assert emailed_token(first) != emailed_token(second)
    assert await token_purposes(conn, order_id) == ["email", "email"]


async def test_smtp_down_then_up_retries_and_sends_once(
    conn: Conn, smtp: SmtpServer, runtime: Resources
) -> None:
    order_id = await make_order(conn)
    outbox_id = await outbox.create_delivery_email(conn, order_id, "buyer@example.com")
    with pytest.raises(RetryableMailError):
        await deliver(outbox_id, runtime)
    row = await outbox_row(conn, outbox_id)
    assert (row["status"], row["attempts"], row["message_id"]) == ("pending", 1, None)
    assert "unreachable" in row["last_error"]

    smtp.start()
    assert await deliver(outbox_id, runtime) is True
    assert len(smtp.handler.messages) == 1
    row = await outbox_row(conn, outbox_id)
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 2, None)


async def test_last_attempt_marks_the_row_failed(
    conn: Conn, smtp: SmtpServer, runtime: Resources
) -> None:
    order_id = await make_order(conn)
    outbox_id = await outbox.create_delivery_email(conn, order_id, "buyer@example.com")
    await conn.execute(
        "UPDATE email_outbox SET attempts = %s WHERE id = %s", (MAX_SEND_ATTEMPTS - 1, outbox_id)
    )
    with pytest.raises(MailError) as info:
        await deliver(outbox_id, runtime)
    assert not info.value.retryable  # procrastinate must not retry it any more
    row = await outbox_row(conn, outbox_id)
    assert (row["status"], row["attempts"]) == ("failed", MAX_SEND_ATTEMPTS)


async def test_permanent_rejection_fails_at_once(
    conn: Conn, smtp: SmtpServer, runtime: Resources
) -> None:
    class Refuser(Recorder):
        async def handle_RCPT(
            self, server: Any, session: Any, envelope: Any, address: str, options: Any
        ) -> str:
            return "550 5.1.1 no such user"

    smtp.handler = Refuser()
    smtp.start()
    order_id = await make_order(conn)
    outbox_id = await outbox.create_delivery_email(conn, order_id, "buyer@example.com")
    with pytest.raises(MailError) as info:
        await deliver(outbox_id, runtime)
    assert not info.value.retryable
    row = await outbox_row(conn, outbox_id)
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert "550" in row["last_error"]


async def test_task_uses_the_installed_runtime(
    conn: Conn, smtp: SmtpServer, runtime: Resources
) -> None:
    order_id = await make_order(conn)
    outbox_id = await outbox.create_delivery_email(conn, order_id, "buyer@example.com")
    smtp.start()
    install(runtime)
    try:
        await send_delivery_email(outbox_id=outbox_id)
    finally:
        install(None)
    assert len(smtp.handler.messages) == 1


async def test_queue_defers_the_job_in_the_callers_transaction(conn: Conn) -> None:
    order_id = await make_order(conn)
    async with conn.transaction():
        outbox_id = await queue_delivery_email(conn, order_id)
        resend_id = await queue_delivery_resend(conn, order_id)
    cur = await conn.execute(
        "SELECT task_name, queue_name, args FROM procrastinate_jobs ORDER BY id"
    )
    assert await cur.fetchall() == [
        ("send_delivery_email", EMAIL_QUEUE, {"outbox_id": outbox_id}),
        ("send_delivery_email", EMAIL_QUEUE, {"outbox_id": resend_id}),
    ]
    assert (await outbox_row(conn, resend_id))["generation"] == 2


async def test_queue_rolls_back_with_the_caller(conn: Conn) -> None:
    order_id = await make_order(conn)
    with pytest.raises(ZeroDivisionError):
        async with conn.transaction():
            await queue_delivery_email(conn, order_id)
            _ = 1 / 0
    cur = await conn.execute(
        "SELECT (SELECT count(*) FROM procrastinate_jobs), (SELECT count(*) FROM email_outbox)"
    )
    assert await cur.fetchone() == (0, 0)


def test_task_is_registered_on_the_email_queue_with_retries() -> None:
    task = queue_app.tasks["send_delivery_email"]
    assert task.queue == EMAIL_QUEUE
    assert task.retry_strategy is SEND_RETRY


@pytest.mark.parametrize(
    ("exc", "attempts", "retried"),
    [
        (RetryableMailError("down"), 0, True),
        (RetryableMailError("down"), MAX_SEND_ATTEMPTS - 2, True),
        (RetryableMailError("down"), MAX_SEND_ATTEMPTS - 1, False),
        (MailError("550"), 0, False),
        (ValueError("bug"), 0, False),
    ],
)
def test_retry_strategy(exc: Exception, attempts: int, retried: bool) -> None:
    job = procrastinate.jobs.Job(
        id=1,
        queue=EMAIL_QUEUE,
        lock=None,
        queueing_lock=None,
        task_name="send_delivery_email",
        attempts=attempts,
    )
    decision = SEND_RETRY.get_retry_decision(exception=exc, job=job)
    assert (decision is not None) == retried
