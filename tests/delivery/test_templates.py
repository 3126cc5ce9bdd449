"""Every customer email rendered from its templates, in every language and every state that
changes its text, text and HTML parts both: each names every product and its platform and
where its key works (the activation steps where the customer is about to use the key), is
in the order's language with the locale's money, escapes catalog names in HTML, falls back
to no message id, and carries no secret but the order token inside the key-page link."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from bitloot import i18n
from bitloot.delivery.compose import OrderFacts
from bitloot.delivery.email import delivery_message_id, key_page_url, render_delivery_email
from bitloot.delivery.notices import (
    NOTICES_WITH_LINK,
    RecoveredOrder,
    notice_message_id,
    recovery_locale,
    render_notice,
    render_recovery_email,
)
from bitloot.i18n.catalogs import extract
from bitloot.i18n.products import ProductFacts, ProductView, describe

ROOT = Path(__file__).resolve().parents[2]
MAIL_FROM = "BitLoot <keys@shop.example>"
ORDER_ID = uuid.UUID("6f1c1c3e-8d7a-4a51-9a55-1b8cbb7d2c11")
OTHER_ID = uuid.UUID("0b7d1c55-1d2e-4f00-8a9b-3c4d5e6f7a80")
# Shaped like a real order access token, so a leak would be found by its shape too.
TOKEN = "blot_" + "Tk9UX0FfUkVBTF9UT0tFTl9CVVRfU0hBUEVEX0xJS0U"
OTHER_TOKEN = "blot_" + "U0VDT05EX1RPS0VOX0ZPUl9USEVfT1RIRVJfT1JERVI"

STEAM = ProductFacts(
    product_id="p-portal", name="Portal 2", platform="Steam", regional_limitations="REGION FREE"
)
TRICKY = ProductFacts(
    product_id="p-tricky",
    name="<b>Game & Co</b>",
    qty=2,
    platform="Xbox Series X|S",
    regional_limitations="EUROPE",
    excluded_countries=("DE", "CH"),
    image_url="https://images.example/cover.jpg",
)
UNKNOWN = ProductFacts(product_id="p-odd", name="Mystery Box", platform=None)
PREORDER = ProductFacts(
    product_id="p-soon",
    name="Future Quest",
    platform="Epic Games",
    regional_limitations="REGION FREE",
    is_preorder=True,
    release_date=date(2027, 3, 1),
)
PRODUCT_SETS = {
    "one product": (STEAM,),
    "several products": (STEAM, TRICKY, UNKNOWN, PREORDER),
}


@dataclass(frozen=True)
class Case:
    kind: str
    details: dict[str, str] = field(default_factory=dict)
    phrases: dict[str, str] = field(default_factory=dict)  # locale -> what it must say


# Every state that changes the text; the money is the order's (39.97 EUR), a crypto amount
# keeps every digit, in the locale's format.
CASES = {
    "delivery": Case("delivery"),
    "payment_received": Case(
        "payment_received",
        {"amount": "39.97", "paid": "0.00091 BTC"},
        {"en": "(paid 0.00091 BTC)", "de": "(bezahlt: 0,00091 BTC)", "es": "(pagado: 0,00091 BTC)"},
    ),
    "payment_received without crypto": Case(
        "payment_received",
        {"amount": "39.97", "currency": "eur", "accepted": "true"},
        {
            "en": "payment of €39.97.",
            "de": "Zahlung über 39,97 € erhalten.",
            "es": "pago de 39,97 €.",
        },
    ),
    "underpaid": Case(
        "underpaid",
        {"received": "20.00", "missing": "19.97", "paid": "0.0004 BTC"},
        {"en": "worth €20.00, €19.97 short", "de": "es fehlen 19,97 €", "es": "faltan 19,97 €"},
    ),
    "underpaid without crypto": Case(
        "underpaid",
        {"received": "20.00", "missing": "19.97"},
        {
            "en": "arrived was worth €20.00",
            "de": "Zahlung war 20,00 € wert",
            "es": "recibido equivalía",
        },
    ),
    "underpaid, amount unknown": Case(
        "underpaid",
        {"paid": "0.0004 BTC"},
        {
            "en": "(0.0004 BTC) did not prove",
            "de": "(0,0004 BTC) hat nicht",
            "es": "(0,0004 BTC) no acreditó",
        },
    ),
    "underpaid, nothing known": Case(
        "underpaid",
        {},
        {"en": "arrived did not prove", "de": "Zahlung hat nicht", "es": "recibido no acreditó"},
    ),
    "undeliverable": Case(
        "undeliverable",
        {},
        {
            "en": "full refund of €39.97",
            "de": "Erstattung von 39,97 €",
            "es": "completo de 39,97 €",
        },
    ),
    "refunded": Case(
        "refunded",
        {"amount": "12.50", "currency": "eur", "reference": "NP-PAYOUT-77"},
        {
            "en": "€12.50, payout reference NP-PAYOUT-77",
            "de": "12,50 €, Referenz",
            "es": "12,50 €, referencia",
        },
    ),
    "refunded without reference": Case(
        "refunded",
        {"amount": "12.50", "currency": "eur"},
        {
            "en": "was refunded: €12.50.",
            "de": "wurde erstattet: 12,50 €.",
            "es": "reembolsado: 12,50 €.",
        },
    ),
    "key_replaced": Case("key_replaced", {"key_id": "K-OLD-1"}),
    "recovery": Case("recovery"),
}
# A phrase each language says and the others do not (the greeting and a body sentence).
LANGUAGE = {
    "en": ("Hello,", "order"),
    "de": ("Hallo,", "Bestellung"),
    "es": ("Hola:", "pedido"),
}
TOTAL = {"en": "€39.97", "de": "39,97 €", "es": "39,97 €"}
WITH_STEPS = {"delivery", "key_replaced"}
WITH_PREORDER = {"payment_received", "underpaid", "undeliverable"}
WITH_WHERE = {
    "delivery",
    "key_replaced",
    "payment_received",
    "underpaid",
    "undeliverable",
    "refunded",
}


def _order(locale: str, items: tuple[ProductFacts, ...], **changes: object) -> OrderFacts:
    order = OrderFacts(
        order_id=ORDER_ID,
        total=Decimal("39.97"),
        currency="eur",
        locale=locale,
        created_at=datetime(2026, 12, 1, 9, 30, tzinfo=UTC),
        items=items,
    )
    return replace(order, **changes)  # type: ignore[arg-type]


def _link(order_id: uuid.UUID, token: str, locale: str) -> str:
    return key_page_url("https://shop.example", order_id, token, locale=locale)


def _render(case: Case, locale: str, items: tuple[ProductFacts, ...]) -> EmailMessage:
    order = _order(locale, items)
    common = {"to_address": "buyer@example.com", "mail_from": MAIL_FROM}
    if case.kind == "delivery":
        msg = render_delivery_email(
            order=order,
            key_page_url=_link(ORDER_ID, TOKEN, locale),
            message_id=delivery_message_id(7, ORDER_ID, MAIL_FROM),
            **common,
        )
    elif case.kind == "recovery":
        # An older order in another language: the email speaks the newest one's.
        older = _order(
            "en", (UNKNOWN,), order_id=OTHER_ID, created_at=datetime(2026, 1, 5, tzinfo=UTC)
        )
        msg = render_recovery_email(
            orders=[
                RecoveredOrder(order, _link(ORDER_ID, TOKEN, locale)),
                RecoveredOrder(older, _link(OTHER_ID, OTHER_TOKEN, locale)),
            ],
            message_id=notice_message_id("recovery", 9, MAIL_FROM),
            **common,
        )
    else:
        msg = render_notice(
            case.kind,
            order=order,
            details=case.details,
            link=_link(ORDER_ID, TOKEN, locale) if case.kind in NOTICES_WITH_LINK else None,
            message_id=notice_message_id(case.kind, 9, MAIL_FROM),
            **common,
        )
    parsed = message_from_bytes(msg.as_bytes(), policy=policy.default)  # as received
    assert isinstance(parsed, EmailMessage)
    return parsed


def _parts(msg: EmailMessage) -> dict[str, str]:
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return {"text": str(text.get_content()), "html": str(html.get_content())}


def _shown(value: str, part: str) -> str:
    """How a catalog value appears in a part (escaped in HTML, as Jinja escapes it)."""
    if part == "text":
        return value
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _english_fragments() -> list[str]:
    """Every English message id of the emails and the shared product wording, cut at its
    placeholders: what a missing translation would show."""
    found = extract(ROOT)
    fragments: set[str] = set()
    for domain in ("emails", "common"):
        for message in found[domain]:
            msgid = message[0] if isinstance(message, tuple) else message
            for piece in re.split(r"%\(\w+\)s|\{\w+\}", msgid):
                if len(piece.strip()) >= 12:
                    fragments.add(piece.strip())
    return sorted(fragments)


ENGLISH = _english_fragments()


def _expected_views(case: Case, locale: str, items: tuple[ProductFacts, ...]) -> list[ProductView]:
    return [describe(item, locale) for item in items]


@pytest.mark.parametrize("products", sorted(PRODUCT_SETS))
@pytest.mark.parametrize("case_name", sorted(CASES))
@pytest.mark.parametrize("locale", i18n.LOCALES)
def test_every_email_in_every_language_and_state(
    locale: str, case_name: str, products: str
) -> None:
    case = CASES[case_name]
    items = PRODUCT_SETS[products]
    msg = _render(case, locale, items)
    assert msg["Content-Language"] == locale
    assert msg["Auto-Submitted"] == "auto-generated"
    subject = msg["Subject"]
    assert subject and "%(" not in subject
    if locale != "en":
        assert subject != _render(case, "en", items)["Subject"]  # the subject is translated
    if case.kind in ("payment_received", "refunded"):
        amount = Decimal(case.details["amount"])
        assert i18n.money(amount, "eur", locale) in subject
    views = _expected_views(case, locale, items)

    for part, body in _parts(msg).items():
        where = f"{case_name}/{locale}/{products}/{part}"
        # The language: its own words, no placeholder left, no English fallback.
        for phrase in LANGUAGE[locale]:
            assert phrase.lower() in body.lower(), where
        # Babel writes a non-breaking space between an amount and its currency.
        spaced = body.replace("\xa0", " ").replace("\u202f", " ")
        if case.phrases:
            assert _shown(case.phrases[locale], part) in spaced, where
        assert not re.search(r"%\(\w+\)s|\{\w+\}", body), where
        if locale != "en":
            leaked = [fragment for fragment in ENGLISH if fragment in body]
            assert not leaked, (where, leaked)
        if case.kind in ("underpaid", "undeliverable"):
            assert TOTAL[locale] in spaced, where
        if part == "html":
            assert f'<html lang="{locale}">' in body
            # Catalog names are escaped: a product named "<b>Game & Co</b>" stays text.
            assert "<b>Game" not in body
            # No remote image: it would tell the image host when the mail is read.
            assert "<img" not in body and "images.example" not in body

        for view in views:
            # Every product by name and platform, in every email.
            assert _shown(view.name, part) in body, (where, view.name)
            if view.platform:
                assert _shown(view.platform, part) in body, (where, view.platform)
            if case.kind in WITH_WHERE:
                assert view.region in body, (where, view.region)
                if view.excluded:
                    assert view.excluded in body, (where, view.excluded)
            if case.kind in WITH_STEPS:
                for step in view.steps:
                    assert _shown(step, part) in body, (where, step)
                if view.redeem_url:
                    assert view.redeem_url in body and view.redeem_label in body, where
            else:
                assert view.steps[0] not in body, where
            if view.preorder:
                assert (view.preorder in body) == (case.kind in WITH_PREORDER), where

        _assert_only_the_link_carries_a_token(case, locale, body, where)


def _assert_only_the_link_carries_a_token(case: Case, locale: str, body: str, where: str) -> None:
    """The order token appears only inside the key-page link's fragment; nothing else
    secret-shaped (a token, a key id) appears at all."""
    links = (
        {ORDER_ID: TOKEN, OTHER_ID: OTHER_TOKEN} if case.kind == "recovery" else {ORDER_ID: TOKEN}
    )
    linked = case.kind in NOTICES_WITH_LINK | {"delivery", "recovery"}
    rest = body
    for order_id, token in links.items():
        url = f"https://shop.example/orders/{order_id}/key?lang={locale}#token={token}"
        if linked:
            assert url in body, where
        rest = rest.replace(url, "")
    assert "token" not in rest.lower() and "blot_" not in rest, where
    assert "K-OLD-1" not in body, where  # the replaced key's id is ours, not the customer's


def test_the_recovery_email_speaks_the_newest_orders_language() -> None:
    newest = _order("es", (STEAM,), created_at=datetime(2026, 12, 1, tzinfo=UTC))
    older = _order("de", (STEAM,), order_id=OTHER_ID, created_at=datetime(2026, 6, 1, tzinfo=UTC))
    assert recovery_locale([older, newest]) == recovery_locale([newest, older]) == "es"
    assert recovery_locale([]) == "en"
    # An order stored with a language we do not speak gets English, never a broken email.
    assert recovery_locale([_order("fr", (STEAM,))]) == "en"
    msg = render_recovery_email(
        orders=[RecoveredOrder(older, _link(OTHER_ID, OTHER_TOKEN, "es"))],
        to_address="buyer@example.com",
        mail_from=MAIL_FROM,
        message_id="<r@x>",
    )
    # One order: its own language; the date is written for it.
    assert msg["Content-Language"] == "de"
    assert "vom 1. Juni 2026" in _parts(msg)["text"]


def test_a_notice_that_links_needs_its_link() -> None:
    with pytest.raises(ValueError, match="link"):
        render_notice(
            "underpaid",
            order=_order("en", (STEAM,)),
            details={},
            to_address="buyer@example.com",
            link=None,
            mail_from=MAIL_FROM,
            message_id="<n@x>",
        )
    with pytest.raises(ValueError, match="unknown notice kind"):
        render_notice(
            "surprise",
            order=_order("en", (STEAM,)),
            details={},
            to_address="buyer@example.com",
            link=None,
            mail_from=MAIL_FROM,
            message_id="<n@x>",
        )
