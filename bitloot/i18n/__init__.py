"""The customer's language: which locales we speak, the translations, and formatting.

Customer-facing text (emails, the key page) is written in English in the templates and
the code, marked for translation (`_()` / `N_()`), and translated through gettext message
catalogs: `bitloot/i18n/messages/<domain>-<locale>.po`, one file per domain and language
(`common`: platforms and regions, shared by every text; `emails`; `keypage`). The `.po`
files are read at run time (Babel compiles them in memory), so the repository holds no
binary `.mo` file that could drift from its source.

A message without a translation (or only a fuzzy one) is shown in English: the message id
is the English text itself, never a key like `email.subject.refund`.

Money, dates and country names are formatted from CLDR data (Babel) for the locale.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from importlib import resources

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.lists import format_list
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal
from babel.support import NullTranslations, Translations

DEFAULT_LOCALE = "en"
# English first: the fallback, and the language of the message ids.
LOCALES: tuple[str, ...] = ("en", "de", "es")
DOMAINS: tuple[str, ...] = ("common", "emails", "keypage")
LANGUAGE_NAMES = {"en": "English", "de": "Deutsch", "es": "Español"}

_TAG = re.compile(r"^\s*([A-Za-z]{1,8})(?:[-_][A-Za-z0-9]{1,8})*\s*$")
_MAX_ACCEPT_LANGUAGE = 500  # longer headers are cut: nobody prefers 50 languages


def N_(message: str) -> str:  # gettext's name for "mark, do not translate"
    """Mark a message for extraction; it is translated where it is shown."""
    return message


def supported(value: str | None) -> str | None:
    """The locale we speak for a language tag (`de-AT` -> `de`), or None."""
    if not value:
        return None
    match = _TAG.match(value)
    if match is None:
        return None
    language = match.group(1).lower()
    return language if language in LOCALES else None


def negotiate(accept_language: str | None) -> str:
    """The best locale we speak for an Accept-Language header (RFC 9110 12.5.4), else English.

    Ranges are taken by q-value (ties in the header's order); `*` and unknown languages are
    skipped; a malformed entry is ignored rather than failing the request.
    """
    if not accept_language:
        return DEFAULT_LOCALE
    ranked: list[tuple[float, int, str]] = []
    for position, entry in enumerate(accept_language[:_MAX_ACCEPT_LANGUAGE].split(",")):
        tag, _, params = entry.partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = -1.0
        locale = supported(tag)
        if locale is not None and 0 < quality <= 1:
            ranked.append((-quality, position, locale))
    return min(ranked)[2] if ranked else DEFAULT_LOCALE


def _catalog_bytes(domain: str, locale: str) -> bytes | None:
    path = resources.files("bitloot.i18n") / "messages" / f"{domain}-{locale}.po"
    if not path.is_file():
        return None
    return path.read_bytes()


@cache
def translations(locale: str) -> NullTranslations:
    """Every domain's translations for `locale`, merged (English: none, the ids are English).

    Fuzzy entries are left out (write_mo skips them), so they fall back to English.
    """
    if locale not in LOCALES:
        raise ValueError(f"unsupported locale {locale!r}")
    merged: NullTranslations = NullTranslations()
    if locale == DEFAULT_LOCALE:
        return merged
    for domain in DOMAINS:
        raw = _catalog_bytes(domain, locale)
        if raw is None:
            continue
        catalog = read_po(io.BytesIO(raw), locale=locale, domain=domain)
        buffer = io.BytesIO()
        write_mo(buffer, catalog)
        buffer.seek(0)
        loaded = Translations(buffer, domain=domain)
        if isinstance(merged, Translations):
            merged.merge(loaded)
        else:
            merged = loaded
    return merged


def gettext(locale: str, message: str) -> str:
    """`message` in `locale` (English when it has no translation)."""
    return translations(locale).gettext(message)


def ngettext(locale: str, singular: str, plural: str, n: int) -> str:
    """The singular or plural of a message in `locale`, by `n`."""
    return translations(locale).ngettext(singular, plural, n)


# --- formatting ---------------------------------------------------------------------------

# Crypto currencies are not ISO 4217: their amounts are shown as a number and the ticker.
_ISO_CURRENCY = re.compile(r"^[A-Za-z]{3}$")


def _decimal(amount: Decimal | str) -> Decimal:
    # Money is never a float: 12.9 would print, but its binary value is not 12.90.
    if not isinstance(amount, Decimal | str):
        raise TypeError(f"money must be a Decimal or a decimal string, not {type(amount).__name__}")
    return Decimal(amount)


def money(amount: Decimal | str, currency: str, locale: str) -> str:
    """An amount in a fiat currency as the locale writes it: `12,90 €`, `€12.90`."""
    value = _decimal(amount)
    code = currency.upper()
    if not _ISO_CURRENCY.match(code) or code not in Locale.parse(locale).currencies:
        return crypto(value, code, locale)
    return format_currency(value, code, locale=locale)


def crypto(amount: Decimal | str, ticker: str, locale: str) -> str:
    """A crypto amount with every digit it has (`0,00123 BTC`): never rounded."""
    value = _decimal(amount)
    exponent = value.as_tuple().exponent
    digits = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    pattern = "#,##0." + "0" * digits if digits else "#,##0"
    return f"{format_decimal(value, format=pattern, locale=locale)} {ticker.upper()}"


def day(value: date | datetime, locale: str) -> str:
    """A date written out for the locale (`1. März 2027`, `March 1, 2027`)."""
    return format_date(value, format="long", locale=locale)


def moment(value: datetime, locale: str) -> str:
    """A time in UTC for the locale (`2. Dezember 2026, 09:40 UTC`)."""
    return format_datetime(value.astimezone(UTC), format="long", tzinfo=UTC, locale=locale)


def country_names(codes: Iterable[str], locale: str) -> list[str]:
    """Country names in the locale for ISO codes, in the locale's alphabetical order; an
    unknown code is shown as itself."""
    territories = Locale.parse(locale).territories
    return sorted((territories.get(code.upper(), code.upper()) for code in codes), key=str.casefold)


def language_name(locale: str) -> str:
    """The language's own name (for a language switch)."""
    return LANGUAGE_NAMES.get(locale, locale)


def join_list(items: Sequence[str], locale: str) -> str:
    """`A, B and C` for the locale (CLDR list patterns)."""
    return format_list(list(items), locale=locale) if items else ""
