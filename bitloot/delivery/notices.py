"""The customer notices and the recovery email: what each says, as text and HTML.

Every notice is about one order and links at most to its key page (the token in the link's
fragment, issued when the email is sent); none carries a key. What a notice says beyond
the order (amounts, a payout reference) was fixed in the outbox row's `details` when it
was queued, so a retried send says the same thing. Interpolated values are escaped in the
HTML part.

Wording decisions: an undeliverable order is told "your keys or a full refund", not
"a refund", because an admin may still retry the purchase; an underpaid order is told
that a person decides (accept the payment and deliver, or refund it), because NOWPayments
cannot top up a settled payment.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from html import escape

from bitloot.delivery.email import domain_of


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """What every notice may name about its order."""

    order_id: uuid.UUID
    total: str
    currency: str
    product_names: Sequence[str]


@dataclass(frozen=True, slots=True)
class RecoveredOrder:
    """One order listed in a recovery email, with its fresh key-page link."""

    order_id: uuid.UUID
    product_names: Sequence[str]
    url: str


@dataclass(frozen=True, slots=True)
class _Text:
    subject: str
    paragraphs: list[str]
    link_label: str | None = None


NOTICES_WITH_LINK = frozenset({"payment_received", "underpaid", "key_replaced"})


def notice_message_id(kind: str, outbox_id: int, mail_from: str) -> str:
    """A Message-ID fixed per outbox row, so a resent copy dedupes (see tasks)."""
    return f"<{kind}-{outbox_id}@{domain_of(mail_from) or 'bitloot'}>"


def render_notice(
    kind: str,
    *,
    order: OrderFacts,
    details: Mapping[str, str],
    to_address: str,
    link: str | None,
    mail_from: str,
    message_id: str,
) -> EmailMessage:
    """Build the multipart notice of `kind` for one order."""
    text = _notice_text(kind, order, details)
    return _message(
        text,
        products=order.product_names,
        link=link if text.link_label else None,
        to_address=to_address,
        mail_from=mail_from,
        message_id=message_id,
    )


def render_recovery_email(
    *, orders: Sequence[RecoveredOrder], to_address: str, mail_from: str, message_id: str
) -> EmailMessage:
    """The answer to POST /orders/recover: one fresh key-page link per order."""
    msg = _headers("Your BitLoot orders: fresh links", to_address, mail_from, message_id)
    lines = []
    items = []
    for order in orders:
        names = ", ".join(order.product_names) or "your order"
        lines.append(f"  - Order {order.order_id} ({names}):\n    {order.url}\n")
        href = escape(order.url, quote=True)
        items.append(
            f"<li>Order <code>{escape(str(order.order_id))}</code> ({escape(names)}): "
            f'<a href="{href}">open the key page</a><br>{href}</li>'
        )
    intro = (
        "Someone (we hope you) asked for new links to the orders of this address. "
        "Here they are; the links we sent before no longer work."
    )
    outro = (
        "Nothing is revealed until you press Reveal on the page. Keep these links private: "
        "anyone who has one can reveal the keys of that order. If you did not ask for this, "
        "you can ignore this email: only this mailbox received the links."
    )
    msg.set_content(f"Hello,\n\n{intro}\n\n{''.join(lines)}\n{outro}\n\nBitLoot\n")
    msg.add_alternative(
        _html_page(
            "Your BitLoot orders: fresh links",
            f"<p>Hello,</p><p>{escape(intro)}</p><ul>{''.join(items)}</ul><p>{escape(outro)}</p>",
        ),
        subtype="html",
    )
    return msg


def _notice_text(kind: str, order: OrderFacts, details: Mapping[str, str]) -> _Text:
    ref = f"Your BitLoot order {order.order_id}"
    total = f"{order.total} {order.currency.upper()}"
    currency = details.get("currency", order.currency).upper()
    if kind == "payment_received":
        amount = f"{details.get('amount', order.total)} {currency}"
        crypto = details.get("paid")
        return _Text(
            f"Payment received for your BitLoot order ({amount})",
            [
                f"{ref}: we received your payment of {amount}"
                + (f" (paid {crypto})." if crypto else "."),
                "This email is your receipt. We are buying your keys now; a second email "
                "with the link to them follows, usually within minutes.",
            ],
            "Follow your order",
        )
    if kind == "underpaid":
        received, missing = details.get("received"), details.get("missing")
        crypto = details.get("paid")
        worth = (
            f" was worth {received} {currency}, {missing} {currency} short."
            if received and missing
            else " did not prove the full amount."
        )
        return _Text(
            "Your BitLoot payment did not cover the order",
            [
                f"{ref} costs {total}. The payment that arrived"
                + (f" ({crypto})" if crypto else "")
                + worth,
                "What happens next: nothing is lost. Our team looks at every underpaid "
                "order and either accepts the payment and delivers your keys, or refunds "
                "what you sent. You will get an email either way; please do not send the "
                "difference to the same payment address.",
            ],
            "See your order",
        )
    if kind == "undeliverable":
        return _Text(
            "We could not deliver your BitLoot order yet",
            [
                f"{ref} is paid, but our supplier could not deliver its keys.",
                "Our team has been told. You will get either your keys or a full refund of "
                f"{total}; you do not need to do anything.",
            ],
        )
    if kind == "refunded":
        amount = f"{details.get('amount', order.total)} {currency}"
        reference = details.get("reference")
        return _Text(
            f"Your BitLoot order was refunded ({amount})",
            [
                f"{ref} was refunded: {amount}"
                + (f", payout reference {reference}." if reference else "."),
                "The keys of this order are no longer available, and its links no longer work.",
            ],
        )
    if kind == "key_replaced":
        return _Text(
            "Your replacement key is ready",
            [
                f"{ref}: the key you reported is replaced by a new one. The old key is no "
                "longer shown on your key page.",
                "Nothing is revealed until you press Reveal on that page. Keep the link "
                "private: anyone who has it can reveal your keys.",
            ],
            "Open your key page",
        )
    raise ValueError(f"unknown notice kind {kind!r}")


def _message(
    text: _Text,
    *,
    products: Sequence[str],
    link: str | None,
    to_address: str,
    mail_from: str,
    message_id: str,
) -> EmailMessage:
    msg = _headers(text.subject, to_address, mail_from, message_id)
    product_lines = "".join(f"  - {name}\n" for name in products)
    body = "Hello,\n\n" + "".join(f"{p}\n\n" for p in text.paragraphs)
    if product_lines:
        body += f"Products:\n{product_lines}\n"
    if link and text.link_label:
        body += f"{text.link_label}:\n{link}\n\n"
    msg.set_content(body + "BitLoot\n")
    items = "".join(f"<li>{escape(name)}</li>" for name in products)
    html = "<p>Hello,</p>" + "".join(f"<p>{escape(p)}</p>" for p in text.paragraphs)
    if items:
        html += f"<p>Products:</p><ul>{items}</ul>"
    if link and text.link_label:
        href = escape(link, quote=True)
        html += (
            f'<p><a href="{href}">{escape(text.link_label)}</a></p>'
            f"<p>If the link does not work, copy this address into your browser:<br>{href}</p>"
        )
    msg.add_alternative(_html_page(text.subject, html), subtype="html")
    return msg


def _headers(subject: str, to_address: str, mail_from: str, message_id: str) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = mail_from
    msg["To"] = to_address
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies
    return msg


def _html_page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        f'<html><head><meta charset="utf-8"><title>{escape(title)}</title></head>'
        f"<body>{body}<p>BitLoot</p></body></html>\n"
    )
