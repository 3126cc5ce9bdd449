"""Extracting messages from the sources and keeping the `.po` catalogs in step.

Used by `scripts/i18n_catalogs.py` (to update the catalogs) and by the tests (to prove
every message has a translation in every locale). Which sources belong to which domain is
DOMAIN_SOURCES: a domain is owned by one part of the code, so two parts never edit one
catalog.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po, write_po

from bitloot.i18n import DEFAULT_LOCALE, LOCALES

# domain -> (glob of Python sources, glob of templates), relative to the repository root.
DOMAIN_SOURCES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "common": (("bitloot/i18n/*.py",), ()),
    "emails": (("bitloot/delivery/*.py",), ("bitloot/delivery/templates/*.j2",)),
    "keypage": (("bitloot/keypage/*.py",), ("bitloot/keypage/templates/*.j2",)),
}
KEYWORDS = {"_": None, "N_": None, "gettext": None, "ngettext": (1, 2), "pgettext": ((1, "c"), 2)}
JINJA_OPTIONS = {"extensions": "jinja2.ext.i18n", "trimmed": "false"}
Message = str | tuple[str, ...]


def catalog_path(root: Path, domain: str, locale: str) -> Path:
    return root / "bitloot" / "i18n" / "messages" / f"{domain}-{locale}.po"


def extract(root: Path) -> dict[str, dict[Message, list[tuple[str, int]]]]:
    """Every marked message of each domain, with where it is used."""
    found: dict[str, dict[Message, list[tuple[str, int]]]] = {}
    for domain, (python_globs, template_globs) in DOMAIN_SOURCES.items():
        messages: dict[Message, list[tuple[str, int]]] = {}
        sources = [("python", g) for g in python_globs] + [("jinja2", g) for g in template_globs]
        for method, pattern in sources:
            for path in sorted(root.glob(pattern)):
                if path.name == "catalogs.py":
                    continue
                options = JINJA_OPTIONS if method == "jinja2" else {}
                method_ref = "jinja2.ext:babel_extract" if method == "jinja2" else "python"
                for lineno, message, _comments, _context in extract_from_file(
                    method_ref, str(path), keywords=KEYWORDS, options=options
                ):
                    where = (str(path.relative_to(root)), lineno)
                    messages.setdefault(message, []).append(where)
        found[domain] = messages
    return found


def read_catalog(root: Path, domain: str, locale: str) -> Catalog:
    path = catalog_path(root, domain, locale)
    if not path.is_file():
        return Catalog(
            locale=locale,
            domain=domain,
            project="BitLoot",
            version="1",
            fuzzy=False,
            header_comment=f"# BitLoot: the {domain} messages in {locale}. Translate msgstr; new "
            "messages come\n# from `python scripts/i18n_catalogs.py` (README, Languages).",
        )
    with path.open("rb") as handle:
        return read_po(handle, locale=locale, domain=domain)


def update(
    root: Path,
    domain: str,
    messages: Mapping[Message, list[tuple[str, int]]],
    given: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, int]:
    """Bring each locale's catalog of `domain` in step with `messages`; returns, per locale,
    how many messages still have no translation."""
    template = Catalog(domain=domain, project="BitLoot", fuzzy=False)
    for message, locations in messages.items():
        template.add(message, locations=locations)
    missing: dict[str, int] = {}
    for locale in LOCALES:
        if locale == DEFAULT_LOCALE:
            continue
        catalog = read_catalog(root, domain, locale)
        catalog.update(template, no_fuzzy_matching=True)
        catalog.obsolete.clear()
        for msgid, msgstr in (given or {}).get(locale, {}).items():
            existing = catalog.get(msgid)
            if existing is not None:
                existing.string = msgstr
                existing.flags.discard("fuzzy")
        buffer = io.BytesIO()
        write_po(buffer, catalog, sort_output=True, include_lineno=False, width=100)
        path = catalog_path(root, domain, locale)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buffer.getvalue())
        missing[locale] = sum(1 for m in catalog if m.id and not _translated(m.string))
    return missing


def _translated(string: object) -> bool:
    if isinstance(string, tuple | list):
        return all(bool(s) for s in string)
    return bool(string)
