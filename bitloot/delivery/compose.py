"""Building a customer email from its templates, in the order's language.

Every email is a pair of Jinja2 templates in `bitloot/delivery/templates/`: `<name>.txt.j2`
(the plain-text part) and `<name>.html.j2` (the HTML part, autoescaped), both extending a
shared layout; the order lines are written once, in `_products.*.j2`, from
`bitloot.i18n.products.describe` (the one home of the platform, region and activation
wording). Subjects live in `subject.txt.j2`. The language is the order's `orders.locale`
(see `locale_of`); a message without a translation is shown in English.

Images: the HTML part shows no product cover image. A remote image in an email tells the
image's host (Kinguin's CDN) when and from where the customer opened it, most mail clients
block such images anyway (leaving an empty box), and embedding the picture would make the
send depend on fetching it. The key page shows it instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any

from bitloot import i18n
from bitloot.i18n.products import ProductFacts, ProductView, describe
from bitloot.i18n.templates import render

TEMPLATES = "bitloot.delivery"


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """What an email may name about its order: the stored order and its lines (the
    `order_items` snapshot), never a key or a token."""

    order_id: uuid.UUID
    total: Decimal
    currency: str
    locale: str
    created_at: datetime
    items: Sequence[ProductFacts] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class CryptoAmount:
    """What was sent in crypto (`0.0009 BTC`), shown with every digit for the locale."""

    amount: Decimal
    ticker: str


def locale_of(order_locale: str | None) -> str:
    """The language an email is written in: the order's, when we speak it; else English."""
    return i18n.supported(order_locale) or i18n.DEFAULT_LOCALE


def products(order: OrderFacts, locale: str) -> list[ProductView]:
    """The order lines as the customer is shown them, in `locale`."""
    return [describe(item, locale) for item in order.items]


def crypto_amount(text: str | None) -> CryptoAmount | None:
    """A stored crypto amount (`"0.0009 BTC"`, as the IPN reported it), or None."""
    if not text:
        return None
    amount, _, ticker = text.strip().partition(" ")
    try:
        value = Decimal(amount)
    except InvalidOperation:
        return None
    if not ticker.strip().isalnum() or not value.is_finite():
        return None
    return CryptoAmount(value, ticker.strip().upper())


def compose(
    name: str,
    locale: str,
    *,
    to_address: str,
    mail_from: str,
    message_id: str,
    subject: Mapping[str, Any],
    **context: Any,
) -> EmailMessage:
    """The multipart (text + HTML) email `name` in `locale`; `subject` is the context of
    its line in `subject.txt.j2` (`kind` and what the subject names)."""
    # One line; the non-breaking space inside an amount (`12,90 €`) stays.
    lines = render(TEMPLATES, "subject.txt.j2", locale, **subject).splitlines()
    title = " ".join(line.strip() for line in lines if line.strip())
    msg = EmailMessage()
    msg["Subject"] = title
    msg["From"] = mail_from
    msg["To"] = to_address
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = message_id
    # RFC 3834: tells auto-responders (out-of-office, ...) not to reply to us.
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(render(TEMPLATES, f"{name}.txt.j2", locale, subject=title, **context))
    msg.add_alternative(
        render(TEMPLATES, f"{name}.html.j2", locale, subject=title, **context), subtype="html"
    )
    # RFC 3282: the language the reader will find (mail clients offer to translate by it).
    # Set after the parts exist: making the message multipart moves Content-* headers
    # into its first part.
    for part in (msg, *msg.iter_parts()):
        part["Content-Language"] = locale
    return msg


def domain_of(mail_from: str) -> str | None:
    """The domain of the sender address (for Message-IDs), None when it has none."""
    _, addr = parseaddr(mail_from)
    try:
        domain = Address(addr_spec=addr).domain if addr else ""
    except (ValueError, IndexError):
        return None
    return domain or None
