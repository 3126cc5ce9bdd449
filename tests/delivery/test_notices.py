"""Customer notices and recovery emails: queued once per kind, sent once, links only.

Against real PostgreSQL and a real SMTP server (aiosmtpd); the send task is the one the
worker runs (`deliver`).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from email.message import EmailMessage
from typing import Any

import psycopg
import pytest
from delivery_support import SmtpServer, make_order

from bitloot.auth.order_tokens import mint, verify
from bitloot.auth.tokens import InvalidToken
from bitloot.delivery.notices import NOTICES_WITH_LINK
from bitloot.delivery.service import queue_notice, queue_recovery_email
from bitloot.delivery.tasks import deliver
from bitloot.resources import Resources

Conn = psycopg.AsyncConnection[Any]

NOTICES: dict[str, dict[str, str]] = {
    "payment_received": {"amount": "39.97", "paid": "0.0009 BTC"},
    "underpaid": {"received": "20.00", "missing": "19.97", "paid": "0.0004 BTC"},
    "undeliverable": {},
    "refunded": {"amount": "39.97", "reference": "NP-PAYOUT-77"},
    "key_replaced": {"key_id": "K-OLD-1"},
}
SUBJECTS = {
    "payment_received": "Payment received for your BitLoot order (€39.97)",
    "underpaid": "Your BitLoot payment did not cover the order",
    "undeliverable": "We could not deliver your BitLoot order yet",
    "refunded": "Your BitLoot order was refunded (€39.97)",
    "key_replaced": "Your replacement key is ready",
}


def _parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def _links(text: str) -> list[tuple[str, str]]:
    return re.findall(r"/orders/([0-9a-f-]{36})/key\?lang=en#token=(\S+)", text)


async def _jobs(conn: Conn) -> int:
    cur = await conn.execute(
        "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'send_delivery_email'"
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("kind", sorted(NOTICES))
async def test_each_notice_is_queued_once_and_sent_once(
    kind: Any, conn: Conn, smtp: SmtpServer, runtime: Resources
) -> None:
    smtp.start()
    order_id = await make_order(conn)
    first = await queue_notice(conn, order_id, kind, details=NOTICES[kind])
    again = await queue_notice(conn, order_id, kind, details={"amount": "1.00"})
    assert first is not None and again is None
    assert await _jobs(conn) == 1  # the repeat deferred nothing either

    assert await deliver(first, runtime) is True
    assert await deliver(first, runtime) is False  # a duplicated job finds it sent
    (message,) = smtp.handler.messages
    assert message["Subject"] == SUBJECTS[kind]
    assert message["To"] == "buyer@example.com"
    assert message["Message-ID"].startswith(f"<{kind}-{first}@")
    text, html = _parts(message)
    assert str(order_id) in text
    for value in NOTICES[kind].values():
        if kind != "key_replaced":  # the key id is ours to know, not the customer's
            assert value.upper() in text.upper()
    # Catalog names are escaped in the HTML part (the product is called "Portal <2>").
    assert "Portal &lt;2&gt;" in html and "Portal <2>" not in html
    links = _links(text)
    if kind in NOTICES_WITH_LINK:
        ((linked_order, token),) = links
        assert linked_order == str(order_id)
        principal = await verify(runtime.pool, token)
        assert principal.order_id == order_id
    else:
        assert links == [] and "token=" not in html
    # The stored row holds no token and no link.
    cur = await conn.execute("SELECT details::text FROM email_outbox WHERE id = %s", (first,))
    row = await cur.fetchone()
    assert row is not None and "blot_" not in row[0] and "http" not in row[0]


async def test_concurrent_jobs_for_one_notice_send_one_email(
    conn: Conn, smtp: SmtpServer, runtime: Resources
) -> None:
    smtp.start()
    order_id = await make_order(conn)
    outbox_id = await queue_notice(conn, order_id, "refunded", details=NOTICES["refunded"])
    assert outbox_id is not None
    sent = await asyncio.gather(*(deliver(outbox_id, runtime) for _ in range(4)))
    assert sorted(sent) == [False, False, False, True]
    assert len(smtp.handler.messages) == 1


async def test_key_replacements_number_their_notices(conn: Conn) -> None:
    order_id = await make_order(conn)
    first = await queue_notice(conn, order_id, "key_replaced", generation=1)
    second = await queue_notice(conn, order_id, "key_replaced", generation=2)
    repeat = await queue_notice(conn, order_id, "key_replaced", generation=2)
    assert first is not None and second is not None and first != second and repeat is None


async def test_details_never_change_once_queued(conn: Conn) -> None:
    order_id = await make_order(conn)
    outbox_id = await queue_notice(conn, order_id, "refunded", details={"amount": "5.00"})
    with pytest.raises(psycopg.Error) as err:
        async with conn.transaction():
            await conn.execute(
                'UPDATE email_outbox SET details = \'{"amount": "500.00"}\' WHERE id = %s',
                (outbox_id,),
            )
    assert err.value.sqlstate == "BL005"


async def _recovery_request(conn: Conn, email: str, orders: list[uuid.UUID]) -> int:
    cur = await conn.execute(
        "INSERT INTO recovery_requests (email, outcome, order_count)"
        " VALUES (%s, 'sent', %s) RETURNING id",
        (email, len(orders)),
    )
    row = await cur.fetchone()
    assert row is not None
    for order_id in orders:
        await conn.execute(
            "INSERT INTO recovery_request_orders (request_id, order_id) VALUES (%s, %s)",
            (row[0], order_id),
        )
    return int(row[0])


async def test_recovery_email_lists_fresh_links_and_revokes_the_old_ones(
    conn: Conn, smtp: SmtpServer, runtime: Resources
) -> None:
    smtp.start()
    first, second = await make_order(conn), await make_order(conn)
    other = await make_order(conn, email="someone-else@example.com")
    ttl = runtime.settings.order_token_ttl
    old_link = await mint(conn, first, purpose="email", ttl_seconds=ttl)
    old_recovery = await mint(conn, second, purpose="recovery", ttl_seconds=ttl)
    checkout = await mint(conn, first, purpose="checkout", ttl_seconds=ttl)
    untouched = await mint(conn, other, purpose="email", ttl_seconds=ttl)

    request_id = await _recovery_request(conn, "buyer@example.com", [first, second])
    outbox_id = await queue_recovery_email(
        conn, request_id=request_id, to_address="buyer@example.com"
    )
    assert await deliver(outbox_id, runtime) is True
    assert await deliver(outbox_id, runtime) is False

    (message,) = smtp.handler.messages
    assert message["To"] == "buyer@example.com"
    text, html = _parts(message)
    links = dict(_links(text))
    assert set(links) == {str(first), str(second)}
    for order_id in (first, second):
        principal = await verify(runtime.pool, links[str(order_id)])
        assert principal.order_id == order_id
        assert f'href="https://shop.example/orders/{order_id}/key?lang=en#token=' in html
    # The links emailed before no longer open anything; the storefront's checkout token and
    # another address's link are not the recovery's business.
    for token in (old_link, old_recovery):
        with pytest.raises(InvalidToken) as err:
            await verify(runtime.pool, token)
        assert err.value.reason == "revoked"
    assert (await verify(runtime.pool, checkout)).order_id == first
    assert (await verify(runtime.pool, untouched)).order_id == other
    cur = await conn.execute(
        "SELECT order_id, kind, recovery_request_id FROM email_outbox WHERE id = %s",
        (outbox_id,),
    )
    assert await cur.fetchone() == (None, "recovery", request_id)
    cur = await conn.execute(
        "SELECT count(*) FROM fulfillment_timeline WHERE order_id = %s AND source = 'recovery'",
        (first,),
    )
    assert await cur.fetchone() == (1,)


async def test_a_recovery_email_needs_its_request_and_no_order(conn: Conn) -> None:
    order_id = await make_order(conn)
    with pytest.raises(psycopg.errors.CheckViolation):
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO email_outbox (order_id, kind, to_address)"
                " VALUES (%s, 'recovery', 'buyer@example.com')",
                (order_id,),
            )
    with pytest.raises(psycopg.errors.CheckViolation):
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO email_outbox (order_id, kind, to_address)"
                " VALUES (NULL, 'refunded', 'buyer@example.com')"
            )
