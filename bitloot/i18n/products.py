"""What a customer is told about a product they bought, in their language.

One home for the wording that the key page (through `GET /fulfillment/{id}/status`) and
every email show per order line: the name, the platform and how to activate the key there,
where the key works, and when a pre-order's key comes. The facts are the order's snapshot
(`order_items`, copied from `products` at `POST /orders`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from bitloot.i18n import N_, day, gettext
from bitloot.i18n.platforms import (
    excluded_text,
    platform_label,
    platform_of,
    region_text,
    steps,
)


@dataclass(frozen=True, slots=True)
class ProductFacts:
    """One order line as stored (order_items)."""

    product_id: str
    name: str
    qty: int = 1
    platform: str | None = None
    regional_limitations: str | None = None
    excluded_countries: tuple[str, ...] = ()
    image_url: str | None = None
    is_preorder: bool = False
    release_date: date | None = None


@dataclass(frozen=True, slots=True)
class ProductView:
    """What is shown for one order line, already in the customer's language."""

    product_id: str
    name: str
    qty: int
    platform: str  # as Kinguin names it; empty when unknown
    platform_code: str  # steam, epic, ..., other
    region: str
    excluded: str  # empty when no country is excluded
    steps: list[str] = field(default_factory=list)
    redeem_url: str | None = None
    redeem_label: str = ""
    preorder: str = ""  # empty unless a pre-order
    image_url: str | None = None


_PREORDER_ON = N_("Pre-order: your key comes when the game is released, on {date}.")
_PREORDER = N_("Pre-order: your key comes when the game is released.")
_REDEEM = N_("Redeem on {platform}")
_REDEEM_GENERIC = N_("Redeem your key")


def describe(facts: ProductFacts, locale: str) -> ProductView:
    """The order line in `locale`: every sentence translated, dates for the locale."""
    platform = platform_of(facts.platform)
    label = platform_label(facts.platform)
    preorder = ""
    if facts.is_preorder:
        preorder = (
            gettext(locale, _PREORDER_ON).format(date=day(facts.release_date, locale))
            if facts.release_date is not None
            else gettext(locale, _PREORDER)
        )
    redeem_label = ""
    if platform.redeem_url:
        redeem_label = gettext(locale, _REDEEM).format(platform=platform.name)
    return ProductView(
        product_id=facts.product_id,
        name=facts.name,
        qty=facts.qty,
        platform=label,
        platform_code=platform.code,
        region=region_text(facts.regional_limitations, locale),
        excluded=excluded_text(facts.excluded_countries, locale),
        steps=steps(platform, locale),
        redeem_url=platform.redeem_url,
        redeem_label=redeem_label or gettext(locale, _REDEEM_GENERIC),
        preorder=preorder,
        image_url=facts.image_url,
    )
