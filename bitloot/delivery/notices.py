"""The customer notices and the recovery email: what each says, as text and HTML.

Every notice is about one order and links at most to its key page (the token in the link's
fragment, issued when the email is sent); none carries a key. What a notice says beyond
the order (amounts, a payout reference) was fixed in the outbox row's `details` when it
was queued, so a retried send says the same thing. The words are in the templates
`bitloot/delivery/templates/<kind>.{txt,html}.j2` (see `compose`), in the order's
language; every notice names each product, its platform and where its key works.

Wording decisions: an undeliverable order is told "your keys or a full refund", not
"a refund", because an admin may still retry the purchase; an underpaid order is told
that a person decides (accept the payment and deliver, or refund it), because NOWPayments
cannot top up a settled payment.

What each shows per product: the delivery email and `key_replaced` give the activation
steps and the redeem link (the customer is about to use the key); `payment_received`,
`underpaid` and `undeliverable` say when a pre-order's key comes (the key is still to
come, and a pre-order's does not come "within minutes"); `refunded` names the products
only (their keys are gone). The recovery email lists each order's products and platform
to tell its orders apart; the key page has the rest.

The recovery email lists several orders, possibly made in different languages: it is
written in the language of the newest one (the customer's latest choice), and every link
in it opens the key page in that language too, so the page reads like the email.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from email.message import EmailMessage
from typing import Any, get_args

from bitloot.delivery.compose import (
    OrderFacts,
    compose,
    crypto_amount,
    domain_of,
    locale_of,
    products,
)
from bitloot.delivery.service import NoticeKind


@dataclass(frozen=True, slots=True)
class RecoveredOrder:
    """One order listed in a recovery email, with its fresh key-page link."""

    order: OrderFacts
    url: str


NOTICES_WITH_LINK = frozenset({"payment_received", "underpaid", "key_replaced"})
NOTICE_KINDS = frozenset(get_args(NoticeKind))


def notice_message_id(kind: str, outbox_id: int, mail_from: str) -> str:
    """A Message-ID fixed per outbox row, so a resent copy dedupes (see tasks)."""
    return f"<{kind}-{outbox_id}@{domain_of(mail_from) or 'bitloot'}>"


def recovery_locale(orders: Sequence[OrderFacts]) -> str:
    """The recovery email's language: the newest listed order's (English for none)."""
    newest = max(orders, key=lambda o: o.created_at, default=None)
    return locale_of(newest.locale if newest is not None else None)


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
    """Build the multipart notice of `kind` for one order, in the order's language."""
    if kind not in NOTICE_KINDS:
        raise ValueError(f"unknown notice kind {kind!r}")
    if kind in NOTICES_WITH_LINK and link is None:
        raise ValueError(f"a {kind} notice needs its key-page link")
    locale = locale_of(order.locale)
    views = products(order, locale)
    facts = _notice_facts(order, details)
    return compose(
        kind,
        locale,
        to_address=to_address,
        mail_from=mail_from,
        message_id=message_id,
        subject={"kind": kind, **facts},
        order=order,
        products=views,
        preorder=any(view.preorder for view in views),
        link=link if kind in NOTICES_WITH_LINK else None,
        **facts,
    )


def render_recovery_email(
    *, orders: Sequence[RecoveredOrder], to_address: str, mail_from: str, message_id: str
) -> EmailMessage:
    """The answer to POST /orders/recover: one fresh key-page link per order."""
    locale = recovery_locale([entry.order for entry in orders])
    listed = [
        {"order": entry.order, "url": entry.url, "products": products(entry.order, locale)}
        for entry in orders
    ]
    return compose(
        "recovery",
        locale,
        to_address=to_address,
        mail_from=mail_from,
        message_id=message_id,
        subject={"kind": "recovery"},
        orders=listed,
    )


def _notice_facts(order: OrderFacts, details: Mapping[str, str]) -> dict[str, Any]:
    """The amounts a notice names, from its stored details (strings) as numbers."""

    def amount(name: str) -> Decimal | None:
        value = details.get(name)
        return Decimal(value) if value else None

    paid_in_fiat = amount("amount")
    return {
        "currency": details.get("currency") or order.currency,
        "amount": order.total if paid_in_fiat is None else paid_in_fiat,
        "received": amount("received"),
        "missing": amount("missing"),
        "paid": crypto_amount(details.get("paid")),
        "reference": details.get("reference") or None,
    }
