"""Jinja2 templates in the customer's language.

One environment per (template package, locale), with autoescape on for `*.html.j2` and off
for `*.txt.j2` (plain text has nothing to escape, and escaping would put `&amp;` into a
text email), gettext installed from `bitloot.i18n.translations(locale)`, and the
formatting filters: `money(currency)`, `crypto(ticker)`, `day`, `moment`.
StrictUndefined: a misspelt variable fails the render (and its test) instead of printing
nothing.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from bitloot import i18n


@cache
def environment(package: str, locale: str) -> Environment:
    """The environment for the templates in `<package>/templates`, in `locale`."""
    env = Environment(
        loader=PackageLoader(package, "templates"),
        # HTML templates escape every value; text templates (`*.txt.j2`) do not.
        autoescape=select_autoescape(enabled_extensions=("html.j2", "html"), default=False),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(i18n.translations(locale), newstyle=True)  # type: ignore[attr-defined]
    env.filters["money"] = lambda amount, currency: i18n.money(amount, currency, locale)
    env.filters["crypto"] = lambda amount, ticker: i18n.crypto(amount, ticker, locale)
    env.filters["day"] = lambda value: i18n.day(value, locale)
    env.filters["moment"] = lambda value: i18n.moment(value, locale)
    env.globals["locale"] = locale
    return env


def render(package: str, name: str, locale: str, **context: Any) -> str:
    """Render `<package>/templates/<name>` in `locale`."""
    return environment(package, locale).get_template(name).render(**context)
