"""The message catalogs: every customer-facing message translated in every locale, the
catalogs in step with the sources, placeholders kept, and English for anything missing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bitloot import i18n
from bitloot.i18n.catalogs import DOMAIN_SOURCES, extract, read_catalog

ROOT = Path(__file__).resolve().parents[2]
TRANSLATED = [loc for loc in i18n.LOCALES if loc != i18n.DEFAULT_LOCALE]
_PLACEHOLDER = re.compile(r"\{[a-z_]+\}|%\([a-z_]+\)s")


@pytest.fixture(scope="module")
def extracted() -> dict[str, dict[object, list[tuple[str, int]]]]:
    return extract(ROOT)  # type: ignore[return-value]


@pytest.mark.parametrize("locale", TRANSLATED)
@pytest.mark.parametrize("domain", sorted(DOMAIN_SOURCES))
def test_every_message_is_translated(domain: str, locale: str, extracted: dict) -> None:
    catalog = read_catalog(ROOT, domain, locale)
    untranslated = []
    for message, where in extracted[domain].items():
        msgid = message[0] if isinstance(message, tuple) else message
        entry = catalog.get(msgid)
        strings = entry.string if entry is not None else ""
        ok = entry is not None and "fuzzy" not in entry.flags
        ok = ok and (all(strings) if isinstance(strings, tuple | list) else bool(strings))
        if not ok:
            untranslated.append((msgid, where[0]))
    assert not untranslated, (
        f"{domain}-{locale}.po lacks translations (run scripts/i18n_catalogs.py, then "
        f"translate): {untranslated[:10]}"
    )


@pytest.mark.parametrize("locale", TRANSLATED)
@pytest.mark.parametrize("domain", sorted(DOMAIN_SOURCES))
def test_translations_keep_every_placeholder(domain: str, locale: str) -> None:
    catalog = read_catalog(ROOT, domain, locale)
    broken = []
    for entry in catalog:
        if not entry.id:
            continue
        ids = entry.id if isinstance(entry.id, tuple) else (entry.id,)
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        wanted = set(_PLACEHOLDER.findall(ids[-1]))
        for string in strings:
            if string and set(_PLACEHOLDER.findall(string)) != wanted:
                broken.append(ids[0])
    assert not broken, f"{domain}-{locale}.po changes placeholders: {broken}"


def test_a_missing_translation_is_english_never_an_id() -> None:
    assert i18n.gettext("de", "A message nobody translated.") == "A message nobody translated."
    assert i18n.gettext("de", "Open Steam and sign in.") == "Öffne Steam und melde dich an."
    assert i18n.gettext("es", "Open Steam and sign in.") == "Abre Steam e inicia sesión."


def test_a_fuzzy_translation_falls_back_to_english(tmp_path: Path) -> None:
    """A translator's unchecked guess (`#, fuzzy`) is never shown: write_mo skips it."""
    import io

    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po
    from babel.support import Translations

    po = (
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=utf-8\\n"\n\n'
        '#, fuzzy\nmsgid "Hello"\nmsgstr "Hallo"\n\nmsgid "Bye"\nmsgstr "Tschüss"\n'
    )
    buffer = io.BytesIO()
    write_mo(buffer, read_po(io.StringIO(po), locale="de"))
    buffer.seek(0)
    loaded = Translations(buffer)
    assert loaded.gettext("Hello") == "Hello"
    assert loaded.gettext("Bye") == "Tschüss"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "en"),
        ("", "en"),
        ("de-DE,de;q=0.9,en;q=0.8", "de"),
        ("fr-CH, fr;q=0.9, es;q=0.8, en;q=0.7", "es"),
        ("en;q=0.5, de;q=0.6", "de"),
        ("es-MX", "es"),
        ("*", "en"),
        ("fr", "en"),
        ("de;q=0, es;q=0.1", "es"),
        ("de;q=abc, es", "es"),
        ("x" * 5000, "en"),
    ],
)
def test_negotiate_accept_language(header: str | None, expected: str) -> None:
    assert i18n.negotiate(header) == expected


def test_supported_reduces_tags_to_our_locales() -> None:
    assert i18n.supported("de-AT") == "de"
    assert i18n.supported("ES") == "es"
    assert i18n.supported("fr") is None
    assert i18n.supported(" de ") == "de"
    assert i18n.supported("<script>") is None
