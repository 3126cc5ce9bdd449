"""The `send_delivery_email` job (every email of the outbox), and how it sends once.

Exactly-once, as far as SMTP allows. Each attempt first issues the email's order access
token in a transaction of its own, committed (see `_issue_email_token`), then sends in one
transaction:

    claim the outbox row (SELECT ... FOR UPDATE; stop if already sent)
    build the message (Message-ID fixed per row; the link carries the committed token)
    UPDATE the row to 'sent'            <- written before sending, not yet committed
    send over SMTP                      <- on failure the transaction rolls back
    COMMIT

Writing 'sent' before the SMTP conversation leaves only the COMMIT between "the server
accepted the message" and "we know it did". A crash or a lost database connection in that
window (milliseconds) leaves the row pending, and the retried job sends the same message a
second time, with the same Message-ID, which mail servers and clients use to dedupe. SMTP
offers no two-phase commit, so that one duplicate cannot be ruled out; it can only be made
rare and recognisable. The row lock also makes a second job for the same row wait and then
find it sent, so concurrent jobs never double-send.
"""

from __future__ import annotations

import uuid
from email.message import EmailMessage
from typing import Any, NoReturn

import procrastinate
import psycopg
import structlog

from bitloot.auth import order_tokens
from bitloot.delivery import repository as outbox
from bitloot.delivery.email import delivery_message_id, key_page_url, render_delivery_email
from bitloot.delivery.notices import (
    NOTICES_WITH_LINK,
    RecoveredOrder,
    notice_message_id,
    recovery_locale,
    render_notice,
    render_recovery_email,
)
from bitloot.delivery.repository import OutboxRow
from bitloot.delivery.service import SEND_TASK
from bitloot.mail import MailError, RetryableMailError
from bitloot.queue import EMAIL_QUEUE, queue_app
from bitloot.resources import Resources, current

log = structlog.get_logger(__name__)

# The tokens of links we emailed; a recovery email revokes them before it issues new ones.
LINK_PURPOSES: tuple[order_tokens.Purpose, ...] = ("email", "recovery")

# The first try and 8 retries, waiting 3**n seconds: 3 s, 9 s, ... 6561 s; about 2.7 hours
# in all, long enough to ride out an SMTP provider's outage without hammering it.
MAX_SEND_ATTEMPTS = 9
RETRY_BASE_SECONDS = 3

SEND_RETRY = procrastinate.RetryStrategy(
    # procrastinate counts retries (job.attempts is 0 on the first run), not runs.
    max_attempts=MAX_SEND_ATTEMPTS - 1,
    exponential_wait=RETRY_BASE_SECONDS,
    # Only transient failures: a 5xx reply or a bad certificate will not heal by itself.
    # A database blip is safe to retry: the outbox row says whether the mail went out.
    retry_exceptions={RetryableMailError, psycopg.OperationalError},
)


@queue_app.task(name=SEND_TASK, queue=EMAIL_QUEUE, pass_context=False, retry=SEND_RETRY)
async def send_delivery_email(outbox_id: int) -> None:
    """Send one outbox row's email (at most once; see the module docstring)."""
    await deliver(outbox_id, current())


async def deliver(outbox_id: int, res: Resources) -> bool:
    """Send the row's email unless it was sent; True when this call sent it.

    A failed attempt is recorded on the row and re-raised as `MailError`: a
    `RetryableMailError` while attempts remain (procrastinate retries it), a plain
    `MailError` once the row is marked 'failed'.
    """
    row: OutboxRow | None = None
    async with res.pool.connection() as conn:
        try:
            tokens = await _issue_email_tokens(conn, outbox_id, res)
            if tokens is None:
                log.info("email.already_sent", outbox_id=outbox_id)
                return False
            async with conn.transaction():
                row = await outbox.claim(conn, outbox_id)
                if row is None:  # a concurrent job sent it meanwhile
                    log.info("email.already_sent", outbox_id=outbox_id)
                    return False
                msg = await _build_message(conn, row, res, tokens)
                await outbox.mark_sent(conn, row.id, str(msg["Message-ID"]))
                await res.mail_transport.send(msg)
            log.info(
                "email.sent",
                outbox_id=row.id,
                kind=row.kind,
                order_id=str(row.order_id) if row.order_id else None,
                generation=row.generation,
                attempt=row.attempts + 1,
            )
            return True
        except MailError as exc:
            await _record_failure(conn, outbox_id, row, exc)


async def _issue_email_tokens(
    conn: psycopg.AsyncConnection[Any], outbox_id: int, res: Resources
) -> dict[uuid.UUID, str] | None:
    """The order access tokens this attempt's email will carry (one per order it links
    to; none for a notice without a link), committed before the send transaction starts;
    None when the row was already sent (nothing to issue).

    Their own transaction, because a token that may have reached the customer must never
    be rolled back: if SMTP accepted the message and the send transaction's COMMIT is then
    lost, the retried job sends the same Message-ID again (with new tokens), and the
    first copy's links must still open the order. A token issued for an attempt whose
    message never went out is never seen by anyone and simply expires.

    A recovery email first revokes each listed order's earlier emailed links (email and
    recovery tokens; a checkout token stays with the storefront that holds it): whoever
    had an old link, the mailbox now holds the only live one.
    """
    ttl = res.settings.order_token_ttl
    async with conn.transaction():
        row = await outbox.claim(conn, outbox_id)
        if row is None:
            return None
        # Never logged: they are the customer's access to the keys.
        if row.kind == "recovery":
            assert row.recovery_request_id is not None  # the table's CHECK says so
            tokens = {}
            for order_id in await outbox.recovery_orders(conn, row.recovery_request_id):
                for purpose in LINK_PURPOSES:
                    await order_tokens.revoke(conn, order_id, purpose=purpose, reason="recovery")
                tokens[order_id] = await order_tokens.mint(
                    conn, order_id, purpose="recovery", ttl_seconds=ttl
                )
            return tokens
        assert row.order_id is not None
        if row.kind == "delivery" or row.kind in NOTICES_WITH_LINK:
            token = await order_tokens.mint(conn, row.order_id, purpose="email", ttl_seconds=ttl)
            return {row.order_id: token}
        return {}


async def _build_message(
    conn: psycopg.AsyncConnection[Any],
    row: OutboxRow,
    res: Resources,
    tokens: dict[uuid.UUID, str],
) -> EmailMessage:
    settings = res.settings

    def link(order_id: uuid.UUID, locale: str) -> str | None:
        token = tokens.get(order_id)
        if token is None:
            return None
        return key_page_url(settings.public_url, order_id, token, locale=locale)

    if row.kind == "recovery":
        listed = [await outbox.order_facts(conn, order_id) for order_id in tokens]
        locale = recovery_locale(listed)
        return render_recovery_email(
            orders=[
                RecoveredOrder(order=order, url=url)
                for order in listed
                if (url := link(order.order_id, locale)) is not None
            ],
            to_address=row.to_address,
            mail_from=settings.mail_from,
            message_id=notice_message_id(row.kind, row.id, settings.mail_from),
        )
    assert row.order_id is not None
    order = await outbox.order_facts(conn, row.order_id)
    if row.kind == "delivery":
        url = link(row.order_id, order.locale)
        assert url is not None
        return render_delivery_email(
            order=order,
            to_address=row.to_address,
            key_page_url=url,
            mail_from=settings.mail_from,
            message_id=delivery_message_id(row.id, row.order_id, settings.mail_from),
        )
    return render_notice(
        row.kind,
        order=order,
        details=row.details,
        to_address=row.to_address,
        link=link(row.order_id, order.locale),
        mail_from=settings.mail_from,
        message_id=notice_message_id(row.kind, row.id, settings.mail_from),
    )


async def _record_failure(
    conn: psycopg.AsyncConnection[Any], outbox_id: int, row: OutboxRow | None, exc: MailError
) -> NoReturn:
    """Count the failed attempt in its own transaction (the sending one rolled back), re-raise."""
    attempts_before = row.attempts if row is not None else 0
    final = not exc.retryable or attempts_before + 1 >= MAX_SEND_ATTEMPTS
    async with conn.transaction():
        attempts = await outbox.mark_attempt_failed(conn, outbox_id, str(exc), final=final)
    fields = {"outbox_id": outbox_id, "attempts": attempts, "error": str(exc)}
    if not final:
        log.warning("email.retry", **fields)
        raise exc
    log.error("email.failed", **fields)
    # Permanent from here on, whatever procrastinate's own attempt count says.
    raise MailError(str(exc)) from None
