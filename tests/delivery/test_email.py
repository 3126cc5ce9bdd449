"""The delivery email: subject, the key-page link with the token in the fragment, no key."""

from __future__ import annotations

import inspect
import uuid
from email import message_from_bytes, policy
from email.message import EmailMessage

from bitloot.delivery.email import (
    DELIVERY_SUBJECT,
    delivery_message_id,
    key_page_url,
    render_delivery_email,
)

ORDER_ID = uuid.UUID("6f1c1c3e-8d7a-4a51-9a55-1b8cbb7d2c11")
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJvcmRlcl9pZCI6IjEifQ.c2lnbmF0dXJl"
MAIL_FROM = "BitLoot <keys@shop.example>"


def _render(product_names: list[str] | None = None) -> EmailMessage:
    msg = render_delivery_email(
        order_id=ORDER_ID,
        to_address="buyer@example.com",
        key_page_url=key_page_url("https://shop.example", ORDER_ID, TOKEN),
        product_names=product_names if product_names is not None else ["Portal 2"],
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
    assert msg["Subject"] == DELIVERY_SUBJECT == "Your BitLoot order is ready"
    assert msg["To"] == "buyer@example.com"
    assert msg["From"] == MAIL_FROM
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Date"] is not None


def test_key_page_link_carries_the_token_in_the_fragment() -> None:
    url = key_page_url("https://shop.example/", ORDER_ID, TOKEN)
    assert url == f"https://shop.example/orders/{ORDER_ID}/key#token={TOKEN}"


def test_both_parts_link_to_the_key_page() -> None:
    text, html = _bodies(_render())
    link = f"https://shop.example/orders/{ORDER_ID}/key#token={TOKEN}"
    assert link in text
    assert f'href="{link}"' in html
    assert "Portal 2" in text and "Portal 2" in html


def test_html_part_escapes_product_names() -> None:
    _, html = _bodies(_render(['<script>alert("x")</script> & Co']))
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co" in html


def test_url_is_escaped_in_html() -> None:
    msg = render_delivery_email(
        order_id=ORDER_ID,
        to_address="buyer@example.com",
        key_page_url='https://shop.example/"><b>x</b>#token=a&b',
        product_names=[],
        mail_from=MAIL_FROM,
        message_id="<m@x>",
    )
    _, html = _bodies(msg)
    assert '"><b>' not in html
    assert "&quot;&gt;&lt;b&gt;x&lt;/b&gt;#token=a&amp;b" in html


def test_renderer_cannot_be_given_a_key() -> None:
    # The email is built only from these; there is no way to pass a key into it.
    assert set(inspect.signature(render_delivery_email).parameters) == {
        "order_id",
        "to_address",
        "key_page_url",
        "product_names",
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
