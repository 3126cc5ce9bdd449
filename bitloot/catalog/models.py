"""What the catalog reads from Kinguin's `product.update` webhook and shows storefronts."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from bitloot.kinguin.models import KinguinModel, UtcDatetime
from bitloot.text import Storable

# Stored in webhook_events.external_id (indexed): text PostgreSQL can hold, and short.
_ProductId = Storable[Annotated[str, StringConstraints(min_length=1, max_length=200)]]

Availability = Literal["in_stock", "out_of_stock", "unknown"]


class ProductUpdateEvent(KinguinModel):
    """The `product.update` webhook body (docs/external-apis.md 1.10). `qty` and `text_qty`
    count the cheapest offers; `price` (their EUR price) is only in older docs, so it may be
    absent."""

    product_id: _ProductId
    qty: int = Field(ge=0)
    updated_at: UtcDatetime
    text_qty: int | None = Field(default=None, ge=0)
    kinguin_id: int | None = None
    cheapest_offer_id: list[str] = Field(default_factory=list)
    price: Decimal | None = Field(default=None, gt=0, allow_inf_nan=False)


class CatalogItemOut(BaseModel):
    """One product of `GET /products`: what a storefront shows, never what we pay."""

    model_config = ConfigDict(extra="forbid")

    productId: str
    name: str
    price: Decimal = Field(description="Our retail price per key, a decimal string.")
    currency: str = Field(description="The currency of `price` (lower-case ISO 4217).")
    availability: Availability = Field(
        description="What Kinguin last told us: `in_stock` (keys at a price we sell at), "
        "`out_of_stock` (no keys, or none at a price we sell at), `unknown` (not checked "
        "yet). `POST /orders` checks again before any payment."
    )
    available: bool = Field(description="`availability` is `in_stock`.")
    platform: str | None = Field(
        description="Where the key is activated, as Kinguin names it (`Steam`, `GOG COM`, "
        "`Xbox Series X|S`, ...); null until Kinguin was read."
    )
    regionalLimitations: str | None = Field(
        description="Where the key works, as Kinguin says (`REGION FREE`, `EUROPE`, ...); "
        "null until Kinguin was read."
    )
    excludedCountries: list[str] = Field(
        description="ISO 3166-1 alpha-2 codes of the countries where the key will not "
        "activate (Kinguin's `countryLimitation`); empty: none named."
    )
    imageUrl: str | None = Field(
        description="The https URL of the product's cover image; null: none (or none we "
        "would show)."
    )
    isPreorder: bool = Field(
        description="A pre-order: the key comes when the game is released (`releaseDate`)."
    )
    releaseDate: date | None = Field(description="The release date; null: unknown.")


class CatalogOut(BaseModel):
    """`GET /products`: the active catalog, by name (catalogs are small: one page)."""

    items: list[CatalogItemOut]
