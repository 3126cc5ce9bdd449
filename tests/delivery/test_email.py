"""The delivery email: subject, the key-page link with the token in the fragment, no key.

What it says in every language and state: tests/delivery/test_templates.py."""

from __future__ import annotations

import inspect
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from email import message_from_bytes, policy
from email.message import EmailMessage

from bitloot.delivery.compose import OrderFacts
from bitloot.delivery.email import (
    delivery_message_id,
    key_page_url,
    render_delivery_email,
)
from bitloot.i18n.products import ProductFacts

ORDER_ID = uuid.UUID("6f1c1c3e-8d7a-4a51-9a55-1b8cbb7d2c11")
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJvcmRlcl9pZCI6IjEifQ.c2lnbmF0dXJl"
MAIL_FROM = "BitLoot <keys@shop.example>"


def _order(*names: str) -> OrderFacts:
    return OrderFacts(
        order_id=ORDER_ID,
        total=Decimal("9.99"),
        currency="eur",
        locale="en",
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
        items=tuple(
            ProductFacts(product_id=f"p{i}", name=name, platform="Steam")
            for i, name in enumerate(names)
        ),
    )


def _render(product_names: list[str] | None = None) -> EmailMessage:
    msg = render_delivery_email(
        order=_order(*(product_names if product_names is not None else ["Portal 2"])),
        to_address="buyer@example.com",
        key_page_url=key_page_url("https://shop.example", ORDER_ID, TOKEN, locale="en"),
        mail_from=MAIL_FROM,
        message_id=delivery_message_id(7, ORDER_ID, MAIL_FROM),
    )
    # Round-trip through bytes, as a recipient would see it.
    parsed = message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _bodies(msg: EmailMessage) -> tuple[str, str]:
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


def test_subject_and_headers() -> None:
    msg = _render()
    assert msg["Subject"] == "Your BitLoot order is ready"
    assert msg["To"] == "buyer@example.com"
    assert msg["From"] == MAIL_FROM
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Content-Language"] == "en"
    assert msg["Date"] is not None


def test_key_page_link_carries_the_token_in_the_fragment() -> None:
    url = key_page_url("https://shop.example/", ORDER_ID, TOKEN, locale="de")
    assert url == f"https://shop.example/orders/{ORDER_ID}/key?lang=de#token={TOKEN}"
    # A language we do not speak opens the page in English.
    assert "?lang=en#" in key_page_url("https://shop.example", ORDER_ID, TOKEN, locale="fr")


def test_both_parts_link_to_the_key_page() -> None:
    text, html = _bodies(_render())
    link = f"https://shop.example/orders/{ORDER_ID}/key?lang=en#token={TOKEN}"
    assert link in text
    assert f'href="{link}"' in html
    assert "Portal 2" in text and "Portal 2" in html


def test_html_part_escapes_product_names() -> None:
    _, html = _bodies(_render(['<script>alert("x")</script> & Co']))
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Co" in html


def test_url_is_escaped_in_html() -> None:
    msg = render_delivery_email(
        order=_order(),
        to_address="buyer@example.com",
        key_page_url='https://shop.example/"><b>x</b>#token=a&b',
        mail_from=MAIL_FROM,
        message_id="<m@x>",
    )
    _, html = _bodies(msg)
    assert '"><b>' not in html
    assert "&#34;&gt;&lt;b&gt;x&lt;/b&gt;#token=a&amp;b" in html


def test_renderer_cannot_be_given_a_key() -> None:
    # The email is built only from these; there is no way to pass a key into it.
    assert set(inspect.signature(render_delivery_email).parameters) == {
        "order",
        "to_address",
        "key_page_url",
        "mail_from",
        "message_id",
    }
    text, html = _bodies(_render())
    for body in (text, html):
        assert "Reveal" in body  # the key is revealed on the page, not here


def test_message_id_is_stable_per_outbox_row() -> None:
    first = delivery_message_id(7, ORDER_ID, MAIL_FROM)
    assert first == delivery_message_id(7, ORDER_ID, MAIL_FROM)
    assert first == f"<delivery-7-{ORDER_ID}@shop.example>"
    assert delivery_message_id(8, ORDER_ID, MAIL_FROM) != first
    assert _render()["Message-ID"] == first


def test_message_id_falls_back_when_sender_has_no_domain() -> None:
    assert delivery_message_id(1, ORDER_ID, "nonsense").endswith("@bitloot>")
