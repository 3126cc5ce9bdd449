"""The delivery email itself: a link to the key page, never a key."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from html import escape
from urllib.parse import quote

DELIVERY_SUBJECT = "Your BitLoot order is ready"


def key_page_url(public_url: str, order_id: uuid.UUID, order_token: str) -> str:
    """The key page link; the token rides in the fragment, which browsers never send."""
    return f"{public_url.rstrip('/')}/orders/{order_id}/key#token={quote(order_token, safe='')}"


def delivery_message_id(outbox_id: int, order_id: uuid.UUID, mail_from: str) -> str:
    """A Message-ID that is the same for every attempt at one outbox row.

    A resend after a crash (the SMTP server accepted, our commit did not happen) then carries
    the same id, so servers and mail clients that dedupe on Message-ID show it once.
    """
    domain = domain_of(mail_from) or "bitloot"
    return f"<delivery-{outbox_id}-{order_id}@{domain}>"


def render_delivery_email(
    *,
    order_id: uuid.UUID,
    to_address: str,
    key_page_url: str,
    product_names: Sequence[str],
    mail_from: str,
    message_id: str,
) -> EmailMessage:
    """Build the multipart (text + HTML) delivery email linking to the key page."""
    msg = EmailMessage()
    msg["Subject"] = DELIVERY_SUBJECT
    msg["From"] = mail_from
    msg["To"] = to_address
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = message_id
    # RFC 3834: tells auto-responders (out-of-office, ...) not to reply to us.
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(_text_body(order_id, key_page_url, product_names))
    msg.add_alternative(_html_body(order_id, key_page_url, product_names), subtype="html")
    return msg


def _text_body(order_id: uuid.UUID, url: str, product_names: Sequence[str]) -> str:
    products = "".join(f"  - {name}\n" for name in product_names)
    return (
        "Hello,\n\n"
        f"Your BitLoot order {order_id} is paid and your keys are ready.\n\n"
        + (f"Products:\n{products}\n" if products else "")
        + "Open this link to see them:\n"
        f"{url}\n\n"
        "Nothing is revealed until you press Reveal on that page. Keep this link private:\n"
        "anyone who has it can reveal your keys.\n\n"
        "If you did not place this order, you can ignore this email.\n\n"
        "BitLoot\n"
    )


def _html_body(order_id: uuid.UUID, url: str, product_names: Sequence[str]) -> str:
    # Every interpolated value is escaped: product names come from the catalog and the
    # URL from configuration, and neither should be able to inject markup.
    items = "".join(f"<li>{escape(name)}</li>" for name in product_names)
    products = f"<p>Products:</p><ul>{items}</ul>" if items else ""
    href = escape(url, quote=True)
    return (
        "<!DOCTYPE html>\n"
        '<html><head><meta charset="utf-8"><title>'
        f"{escape(DELIVERY_SUBJECT)}</title></head><body>"
        "<p>Hello,</p>"
        f"<p>Your BitLoot order <code>{escape(str(order_id))}</code> is paid and your keys "
        "are ready.</p>"
        f"{products}"
        f'<p><a href="{href}">Open your key page</a></p>'
        f"<p>If the link does not work, copy this address into your browser:<br>{href}</p>"
        "<p>Nothing is revealed until you press Reveal on that page. Keep this link private: "
        "anyone who has it can reveal your keys.</p>"
        "<p>If you did not place this order, you can ignore this email.</p>"
        "<p>BitLoot</p></body></html>\n"
    )


def domain_of(mail_from: str) -> str | None:
    _, addr = parseaddr(mail_from)
    try:
        domain = Address(addr_spec=addr).domain if addr else ""
    except (ValueError, IndexError):
        return None
    return domain or None
