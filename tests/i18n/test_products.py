"""What the customer is told per product: platform steps, regions, pre-orders, formatting."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from bitloot import i18n
from bitloot.i18n.platforms import GENERIC, PLATFORMS, platform_of
from bitloot.i18n.products import ProductFacts, describe
from bitloot.i18n.templates import environment


@pytest.mark.parametrize(
    ("kinguin", "code"),
    [
        ("Steam", "steam"),
        ("Epic Games", "epic"),
        ("GOG COM", "gog"),
        ("XBOX ONE", "xbox"),
        ("Xbox Series X|S", "xbox"),
        ("Microsoft Store", "xbox"),
        ("PlayStation 5", "playstation"),
        ("PSN", "playstation"),
        ("Nintendo Switch", "nintendo"),
        ("Origin", "ea"),
        ("EA App", "ea"),
        ("Ubisoft Connect", "ubisoft"),
        ("Uplay", "ubisoft"),
        ("Battle.net", "battlenet"),
        ("Other", "other"),
        ("Rockstar Games Launcher", "other"),
        ("", "other"),
        (None, "other"),
    ],
)
def test_platform_of_kinguin_text(kinguin: str | None, code: str) -> None:
    assert platform_of(kinguin).code == code


def test_every_platform_has_steps_and_only_https_redeem_links() -> None:
    for platform in (*PLATFORMS, GENERIC):
        assert platform.steps
        assert platform.redeem_url is None or platform.redeem_url.startswith("https://")
    names = {p.code for p in PLATFORMS}
    wanted = {"steam", "epic", "gog", "xbox", "playstation", "nintendo", "ea", "ubisoft"}
    assert wanted | {"battlenet"} == names


@pytest.mark.parametrize("locale", i18n.LOCALES)
def test_describe_translates_every_sentence(locale: str) -> None:
    facts = ProductFacts(
        "p1",
        "Cyberpunk 2077",
        qty=2,
        platform="GOG COM",
        regional_limitations="EUROPE",
        excluded_countries=("DE", "RU"),
        is_preorder=True,
        release_date=date(2027, 3, 1),
    )
    view = describe(facts, locale)
    assert view.platform == "GOG COM"
    assert view.platform_code == "gog"
    assert view.redeem_url == "https://www.gog.com/redeem"
    assert view.name == "Cyberpunk 2077"
    expected = {
        "en": ("Works in Europe.", "Germany", "March 1, 2027", "Sign in to GOG.com."),
        "de": ("Funktioniert in Europa.", "Deutschland", "1. März 2027", "Melde dich"),
        "es": ("Funciona en Europa.", "Alemania", "1 de marzo de 2027", "Inicia sesión"),
    }[locale]
    assert view.region == expected[0]
    assert expected[1] in view.excluded
    assert expected[2] in view.preorder
    assert view.steps[0].startswith(expected[3])


def test_unknown_region_is_shown_as_written_and_missing_facts_say_so() -> None:
    assert describe(ProductFacts("p", "G", regional_limitations="RU VPN"), "de").region == (
        "Funktioniert in dieser Region: RU VPN."
    )
    bare = describe(ProductFacts("p", "G"), "en")
    assert bare.region == "Check the product page for where this key works."
    assert bare.excluded == ""
    assert bare.preorder == ""
    assert bare.platform == ""
    assert bare.platform_code == "other"
    assert bare.redeem_url is None


@pytest.mark.parametrize(
    ("locale", "eur", "usd"),
    [
        ("en", "€12.90", "$1,234.50"),
        ("de", "12,90\xa0€", "1.234,50\xa0$"),
        ("es", "12,90\xa0€", "1.234,50\xa0US$"),
    ],
)
def test_money_is_written_as_the_locale_writes_it(locale: str, eur: str, usd: str) -> None:
    assert i18n.money(Decimal("12.90"), "eur", locale) == eur
    assert i18n.money("1234.50", "USD", locale) == usd


def test_crypto_amounts_keep_every_digit() -> None:
    assert i18n.crypto(Decimal("0.00123000"), "btc", "de") == "0,00123000 BTC"
    assert i18n.money("3.5", "usdttrc20", "en") == "3.5 USDTTRC20"


def test_dates_and_times_are_utc_and_localised() -> None:
    moment = datetime(2026, 12, 2, 9, 40, tzinfo=UTC)
    assert "Dezember 2026" in i18n.moment(moment, "de")
    assert "UTC" in i18n.moment(moment, "es")


def test_templates_escape_html_but_not_text(tmp_path: object) -> None:
    env = environment("bitloot.keypage", "de")
    html = env.from_string("{{ name }}")
    # from_string has no name: autoescape follows the default for strings (on).
    assert html.render(name="<b>&</b>") == "&lt;b&gt;&amp;&lt;/b&gt;"
    assert env.from_string("{{ _('Open Steam and sign in.') }}").render() == (
        "Öffne Steam und melde dich an."
    )
    money = env.from_string("{{ amount | money('eur') }}")
    assert money.render(amount=Decimal("12.90")) == "12,90\xa0€"
    with pytest.raises(TypeError, match="Decimal"):
        money.render(amount=12.9)
