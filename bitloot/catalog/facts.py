"""What the catalog keeps of Kinguin's product beyond stock and price: the facts the customer
is told about the key (platform, where it works, a cover image, pre-order and release date).

Kinguin's text is untrusted. Each fact is made to fit its column (migration 0021) here,
before it is stored, so a bad fact is dropped or cut, never a reason to fail the read (and
with it an order's stock check): text loses control characters and is cut to the column's
length, a country list keeps only two-letter codes, an image URL is kept only when it is a
plain https URL a mail client and a browser can load, a release date only when it is one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from urllib.parse import urlsplit

from bitloot.kinguin.models import Product
from bitloot.text import printable_text

# The CHECKs of products and order_items (sql/migrations/0021_product_facts_and_locale.sql).
MAX_PLATFORM = 100
MAX_REGION = 200
MAX_IMAGE_URL = 2000
# RFC 3986 characters only: no space, quote or angle bracket (the column's CHECK), and no
# raw non-ASCII, which every mail client would encode its own way.
_URL_CHARS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+$")
# `releaseDate` is `Y-m-d` in Kinguin's examples; a time after it is tolerated.
_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:[T ].*)?$")


@dataclass(frozen=True)
class Facts:
    """A product's facts as stored on `products` (and copied onto `order_items`)."""

    platform: str | None = None
    regional_limitations: str | None = None
    excluded_countries: tuple[str, ...] = ()
    image_url: str | None = None
    is_preorder: bool = False
    release_date: date | None = None


def facts_of(product: Product) -> Facts:
    """The facts of a Kinguin product, each made to fit its column (or dropped)."""
    return Facts(
        platform=_text(product.platform, MAX_PLATFORM),
        regional_limitations=_text(product.regional_limitations, MAX_REGION),
        excluded_countries=tuple(product.country_limitation),
        image_url=image_url(product.cover_url),
        is_preorder=bool(product.is_preorder),
        release_date=release_date(product.release_date),
    )


def _text(value: str | None, max_chars: int) -> str | None:
    """Printable text cut to `max_chars` and trimmed; None when nothing is left."""
    cut = printable_text(value.strip() if value else None, max_chars)
    return (cut.strip() or None) if cut else None


def image_url(value: str | None) -> str | None:
    """`value` when it is an absolute https URL with a host, no credentials and only URL
    characters, at most `MAX_IMAGE_URL` long; otherwise None (no image shown)."""
    if not value or len(value) > MAX_IMAGE_URL or not _URL_CHARS.match(value):
        return None
    if not value.startswith("https://"):  # the column's CHECK is case-sensitive
        return None
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme != "https" or not host or "@" in parts.netloc:
        return None
    return value


def release_date(value: str | None) -> date | None:
    """The date of `releaseDate` (`2027-03-01`, or with a time after it); None when it is
    missing or not a real date."""
    match = _DATE.match(value.strip()) if value else None
    if match is None:
        return None
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:
        return None
