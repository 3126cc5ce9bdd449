"""The order's language, end to end through the send task: a real PostgreSQL order with its
`locale` and its lines' snapshot, the worker's `deliver`, a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import re
import uuid
from email.message import EmailMessage
from typing import Any

import psycopg
from delivery_support import SmtpServer, make_order

from bitloot.auth.order_tokens import verify
from bitloot.delivery import repository as outbox
from bitloot.delivery.service import queue_notice, queue_recovery_email
from bitloot.delivery.tasks import deliver
from bitloot.resources import Resources

Conn = psycopg.AsyncConnection[Any]


def _parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


async def test_a_german_orders_delivery_email_arrives_in_german(
    conn: Conn, smtp: SmtpServer, runtime: Resources
) -> None:
    smtp.start()
    order_id = await make_order(conn, locale="de")
    outbox_id = await outbox.create_delivery_email(conn, order_id, "kaeufer@example.com")
    assert await deliver(outbox_id, runtime) is True

    (message,) = smtp.handler.messages
    assert message["Subject"] == "Deine BitLoot-Bestellung ist bereit"
    assert message["Content-Language"] == "de"
    text, html = _parts(message)
    for body in (text, html):
        assert "Hallo," in body
        assert f"Deine BitLoot-Bestellung {order_id} ist bezahlt" in body
        # Each product, its platform, where it works and how to activate it, in German.
        assert "Plattform: Steam" in body and "Plattform: GOG COM" in body
        assert "Hades (2 Keys)" in body
        assert "Funktioniert weltweit (ohne Regionssperre)." in body
        assert "Funktioniert in Europa." in body
        assert "Lässt sich nicht aktivieren in: Schweiz." in body
        assert "Öffne Steam und melde dich an." in body
        assert "https://www.gog.com/redeem" in body
        assert "Hello" not in body and "Products:" not in body
    assert "Portal <2>" in text and "Portal &lt;2&gt;" in html
    # The link opens the key page in German; its token opens exactly this order.
    (token,) = re.findall(rf"/orders/{order_id}/key\?lang=de#token=(\S+)", text)
    assert (await verify(conn, token)).order_id == order_id
    assert f'href="https://shop.example/orders/{order_id}/key?lang=de#token={token}"' in html


async def test_a_spanish_orders_notice_is_in_spanish_with_its_money(
    conn: Conn, smtp: SmtpServer, runtime: Resources
) -> None:
    smtp.start()
    order_id = await make_order(conn, locale="es")
    details = {"received": "20.00", "missing": "19.97", "paid": "0.0004 BTC"}
    outbox_id = await queue_notice(conn, order_id, "underpaid", details=details)
    assert outbox_id is not None
    assert await deliver(outbox_id, runtime) is True

    (message,) = smtp.handler.messages
    assert message["Subject"] == "Tu pago a BitLoot no cubrió el pedido"
    assert message["Content-Language"] == "es"
    text, _ = _parts(message)
    text = text.replace("\xa0", " ")
    assert f"Tu pedido de BitLoot {order_id} cuesta 39,97 €." in text
    assert "El pago recibido (0,0004 BTC) equivalía a 20,00 €; faltan 19,97 €." in text
    assert "Plataforma: GOG COM" in text and "No se puede activar en: Suiza." in text
    assert re.search(rf"/orders/{order_id}/key\?lang=es#token=blot_", text)


async def test_the_recovery_email_speaks_the_newest_orders_language(
    conn: Conn, smtp: SmtpServer, runtime: Resources
) -> None:
    smtp.start()
    older = await make_order(conn, locale="en")
    newer = await make_order(conn, locale="de")
    await conn.execute(
        "UPDATE orders SET created_at = created_at - interval '30 days' WHERE id = %s", (older,)
    )
    request_id = await _recovery_request(conn, "buyer@example.com", [older, newer])
    outbox_id = await queue_recovery_email(
        conn, request_id=request_id, to_address="buyer@example.com"
    )
    assert await deliver(outbox_id, runtime) is True

    (message,) = smtp.handler.messages
    assert message["Subject"] == "Deine BitLoot-Bestellungen: neue Links"
    assert message["Content-Language"] == "de"
    text, _ = _parts(message)
    assert "Portal <2> - Steam" in text and "Hades (2 Keys) - GOG COM" in text
    # Every link opens the key page in the email's language, the older order's too.
    links = re.findall(r"/orders/([0-9a-f-]{36})/key\?lang=([a-z]{2})#token=", text)
    assert sorted(links) == sorted([(str(older), "de"), (str(newer), "de")])


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
