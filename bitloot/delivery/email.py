"""The delivery email itself: a link to the key page, never a key.

It names every product of the order with its platform, where the key works and how to
activate it (templates `delivery.*.j2`), in the order's language.
"""

from __future__ import annotations

import uuid
from email.message import EmailMessage
from urllib.parse import quote

from bitloot.delivery.compose import OrderFacts, compose, domain_of, locale_of, products

__all__ = [
    "delivery_message_id",
    "domain_of",
    "key_page_url",
    "render_delivery_email",
]


def key_page_url(public_url: str, order_id: uuid.UUID, order_token: str, *, locale: str) -> str:
    """The key page link in the customer's language (`?lang=`); the token rides in the
    fragment, which browsers never send."""
    return (
        f"{public_url.rstrip('/')}/orders/{order_id}/key?lang={quote(locale_of(locale))}"
        f"#token={quote(order_token, safe='')}"
    )


def delivery_message_id(outbox_id: int, order_id: uuid.UUID, mail_from: str) -> str:
    """A Message-ID that is the same for every attempt at one outbox row.

    A resend after a crash (the SMTP server accepted, our commit did not happen) then carries
    the same id, so servers and mail clients that dedupe on Message-ID show it once.
    """
    domain = domain_of(mail_from) or "bitloot"
    return f"<delivery-{outbox_id}-{order_id}@{domain}>"


def render_delivery_email(
    *,
    order: OrderFacts,
    to_address: str,
    key_page_url: str,
    mail_from: str,
    message_id: str,
) -> EmailMessage:
    """Build the multipart (text + HTML) delivery email linking to the key page."""
    locale = locale_of(order.locale)
    return compose(
        "delivery",
        locale,
        to_address=to_address,
        mail_from=mail_from,
        message_id=message_id,
        subject={"kind": "delivery"},
        order=order,
        products=products(order, locale),
        link=key_page_url,
    )
