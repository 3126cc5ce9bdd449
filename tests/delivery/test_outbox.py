"""The email outbox and the send task's logic, against real PostgreSQL and a real SMTP server."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, replace
from decimal import Decimal
from email.message import EmailMessage
from typing import Any

import procrastinate
import psycopg
import pytest
from delivery_support import (
    Recorder,
    SmtpServer,
    emailed_token,
    make_order,
    outbox_row,
    token_purposes,
)

from bitloot.auth.order_tokens import token_hash, verify
from bitloot.delivery import repository as outbox
from bitloot.delivery.service import queue_delivery_email, queue_delivery_resend
from bitloot.delivery.tasks import (
    MAX_SEND_ATTEMPTS,
    SEND_RETRY,
    deliver,
    send_delivery_email,
)
from bitloot.mail import MailError, RetryableMailError
from bitloot.queue import EMAIL_QUEUE, queue_app
from bitloot.resources import Resources, install

Conn = psycopg.AsyncConnection[Any]


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


async def test_the_emails_read_the_order_lines_snapshot(conn: Conn) -> None:
    order_id = await make_order(conn, locale="de")
    # The catalog changes after the order: the emails still name what was bought.
    await conn.execute("UPDATE products SET name = 'Renamed' WHERE product_id = 'p-hades'")
    facts = await outbox.order_facts(conn, order_id)
    assert (facts.locale, facts.total, facts.currency) == ("de", Decimal("39.97"), "eur")
    assert [(i.name, i.qty, i.platform, i.excluded_countries) for i in facts.items] == [
        ("Hades", 2, "GOG COM", ("CH",)),
        ("Portal <2>", 1, "Steam", ()),
    ]


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
        r"https://shop\.example/orders/([0-9a-f-]+)/key\?lang=en#token=(\S+)", text.get_content()
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
