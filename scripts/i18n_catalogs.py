"""Keep the message catalogs in step with the sources: `python scripts/i18n_catalogs.py`.

Extracts every marked message of each domain (see bitloot/i18n/__init__.py and
DOMAIN_SOURCES below), adds the new ones to `bitloot/i18n/messages/<domain>-<locale>.po`
untranslated, marks the ones no longer used obsolete, and keeps every translation. The
test tests/i18n/test_catalogs.py fails while any message lacks a translation.

`--translations FILE.py` merges translations from a Python file defining one dict per
locale in upper case (`DE = {msgid: msgstr}`), for writing them in bulk.
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bitloot.i18n.catalogs import extract, update  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--translations", type=Path, help="a .py file with DE = {...}, ES = {...}")
    args = parser.parse_args()
    given: dict[str, dict[str, str]] = {}
    if args.translations:
        namespace = runpy.run_path(str(args.translations))
        given = {k.lower(): v for k, v in namespace.items() if k.isupper() and isinstance(v, dict)}
    for domain, messages in extract(ROOT).items():
        for locale, missing in update(ROOT, domain, messages, given).items():
            print(f"{domain}-{locale}.po: {missing} untranslated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
