"""The catalog domain: what Kinguin says about each product we sell, and whether an order may
be sold on it. The one home of "may this be sold now?".

Kinguin's answer about a product (`GET /v2/products/{productId}`: the cheapest offer's EUR
price, the keys in stock across the cheapest offers, `textQty` of them text keys) is kept
on its `products` row with `checked_at`, and with it what the customer is told about the
key (platform, region, excluded countries, cover, pre-order; `bitloot.catalog.facts`),
which `POST /orders` copies onto its lines. It is refreshed three ways: by `ensure_available`
when an order needs it, by the `refresh_catalog` job every 10 minutes, and by Kinguin's
`product.update` webhook (`receive_product_update`), which is ignored when it is not newer
than the stored `kinguin_updated_at` (events arrive out of order).

`ensure_available` is called by `POST /orders` for a NEW order, before any order row or
invoice exists, outside any transaction. Per item: the stored answer is used while younger
than `BITLOOT_PRODUCT_CACHE_TTL`, otherwise the product is read again (every such item
concurrently). An item is refused (409) when the answer has fewer keys than asked (text
keys for a `text_only` product) (`out-of-stock`) or its cheapest offer costs more than the
item's `max_cost` (`price-unavailable`).

When Kinguin cannot be reached (timeout, 5xx, 429, a bad answer, no client), the item is
sold on the stored answer if it is younger than `BITLOOT_PRODUCT_STALE_TTL` and says "in
stock at a price we pay"; otherwise the order is refused with 503 `catalog-unavailable`
and `Retry-After`. Selling on a slightly old answer is bounded: the purchase itself still
sends `max_cost` as Kinguin's price limit, so a product that became dearer fails
fulfillment (visible, refundable) rather than being bought at a loss. A stored answer
never refuses an order on its own: only a fresh one does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import structlog

from bitloot.catalog import repository
from bitloot.catalog.facts import Facts, facts_of
from bitloot.catalog.models import Availability, CatalogItemOut, CatalogOut, ProductUpdateEvent
from bitloot.catalog.repository import CatalogRow
from bitloot.config import Settings
from bitloot.inbox import service as inbox
from bitloot.inbox.service import EventOutcome, Outcome
from bitloot.kinguin.client import KinguinClient
from bitloot.kinguin.errors import KinguinError, ProductUnavailableError
from bitloot.resources import Resources
from bitloot.web.errors import Conflict, ServiceUnavailable

__all__ = [
    "Answer",
    "CatalogRow",
    "CatalogUnavailable",
    "Item",
    "OutOfStock",
    "PriceUnavailable",
    "ProductUpdateEvent",
    "ensure_available",
    "list_catalog",
    "public_catalog",
    "reader_client",
    "receive_product_update",
    "refresh_catalog",
]

log = structlog.get_logger(__name__)
Conn = psycopg.AsyncConnection[Any]

# The API's reads happen while a customer waits: one retry, a short timeout.
CHECK_TIMEOUT = 5.0
CHECK_ATTEMPTS = 2
# Reads of the periodic refresh in flight at once (Kinguin documents no rate limit).
REFRESH_CONCURRENCY = 4
# A 503's Retry-After, in seconds.
RETRY_AFTER = 30
# As for order.status events (bitloot/fulfillment/kinguin_webhook.py): an updatedAt this far
# past our clock is not trusted as the watermark.
MAX_CLOCK_SKEW = timedelta(minutes=5)


# --- the problems -------------------------------------------------------------------------


class ProductRefused(Conflict):
    """409: an item cannot be sold now; `productId` names the first one, `unavailable`
    lists each with its reason."""

    def __init__(self, detail: str, refused: list[tuple[str, str]]) -> None:
        super().__init__(
            detail,
            extras={
                "productId": refused[0][0],
                "unavailable": [{"productId": pid, "reason": why} for pid, why in refused],
            },
        )


class OutOfStock(ProductRefused):
    """409: Kinguin has fewer keys of the product than the order asks for."""

    slug = "out-of-stock"
    title = "Out of stock"


class PriceUnavailable(ProductRefused):
    """409: Kinguin's cheapest offer costs more than we pay for the product."""

    slug = "price-unavailable"
    title = "Price unavailable"


class CatalogUnavailable(ServiceUnavailable):
    """503: Kinguin cannot be reached and no recent answer says the product is available."""

    slug = "catalog-unavailable"
    title = "Catalog unavailable"

    def __init__(self, product_ids: list[str]) -> None:
        super().__init__(
            "Stock and price cannot be checked right now; retry shortly.",
            retry_after=RETRY_AFTER,
        )
        self.extras["productId"] = product_ids[0]
        self.extras["productIds"] = product_ids


# --- the rule -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """What an order line asks of the catalog."""

    product_id: str
    qty: int
    max_cost: Decimal
    text_only: bool


@dataclass(frozen=True)
class Answer:
    """Kinguin's answer about a product: the cheapest offer's price (None: no offer in
    stock, or never told), the keys in stock across the cheapest offers, and what the
    customer is told about the key (None: not read, e.g. Kinguin's 404 for a sold-out
    product, when the stored facts stay)."""

    price: Decimal | None
    qty: int
    text_qty: int | None
    updated_at: datetime | None = None
    facts: Facts | None = None

    def stock(self, text_only: bool) -> int:
        """Keys an item may buy: text keys for a text-only product (all keys when Kinguin
        did not say how many are text)."""
        return self.text_qty if text_only and self.text_qty is not None else self.qty

    def refusal(self, item: Item) -> str | None:
        """Why `item` cannot be sold on this answer (`out-of-stock`, `price-unavailable`),
        or None when it can."""
        if self.stock(item.text_only) < item.qty or self.price is None:
            return OutOfStock.slug
        if self.price > item.max_cost:
            return PriceUnavailable.slug
        return None

    def availability(self, *, text_only: bool, max_cost: Decimal) -> Availability:
        """What a storefront is told (one key asked for)."""
        if self.stock(text_only) > 0 and self.price is None:
            return "unknown"  # stock from a webhook, price never read
        refused = self.refusal(Item("", 1, max_cost, text_only))
        return "in_stock" if refused is None else "out_of_stock"


async def ensure_available(res: Resources, items: Sequence[Item]) -> None:
    """Check every item against Kinguin (see the module docstring); `OutOfStock`,
    `PriceUnavailable` or `CatalogUnavailable` when the order may not be sold. Holds no
    transaction while it waits for Kinguin."""
    settings = res.settings
    ids = [item.product_id for item in items]
    async with res.pool.connection() as conn:
        stored = await repository.stored_answers(
            conn,
            ids,
            fresh_seconds=settings.product_cache_ttl,
            usable_seconds=settings.product_stale_ttl,
        )
    stale = [pid for pid in ids if pid not in stored or not stored[pid].fresh]
    read = await _read_products(res.kinguin, stale) if stale else {}
    if read:
        async with res.pool.connection() as conn, conn.transaction():
            for product_id, fetched in read.items():
                await _record(conn, product_id, fetched)
    refused: list[tuple[str, str]] = []
    unreachable: list[str] = []
    for item in items:
        answer = read.get(item.product_id)
        if answer is None and item.product_id not in stale:
            answer = _answer_of(stored[item.product_id])
        if answer is not None:
            reason = answer.refusal(item)
            if reason is not None:
                refused.append((item.product_id, reason))
            continue
        # Kinguin did not answer: a recent stored "yes" still sells.
        kept = stored.get(item.product_id)
        if kept is None or not kept.usable or _answer_of(kept).refusal(item) is not None:
            unreachable.append(item.product_id)
        else:
            log.info("catalog.sold_on_stored_answer", product_id=item.product_id)
    if refused:
        _refuse(refused)
    if unreachable:
        log.warning("catalog.unavailable", product_ids=unreachable)
        raise CatalogUnavailable(unreachable)


def _refuse(refused: list[tuple[str, str]]) -> None:
    names = ", ".join(pid for pid, _ in refused)
    if any(reason == OutOfStock.slug for _, reason in refused):
        log.info("catalog.out_of_stock", refused=refused)
        raise OutOfStock(f"Not enough keys in stock: {names}.", refused)
    log.info("catalog.price_unavailable", refused=refused)
    raise PriceUnavailable(f"Not available at our price right now: {names}.", refused)


def _answer_of(stored: repository.StoredAnswer) -> Answer:
    return Answer(stored.kinguin_price, stored.kinguin_qty or 0, stored.kinguin_text_qty)


# --- reading Kinguin ----------------------------------------------------------------------


def reader_client(settings: Settings) -> KinguinClient | None:
    """The Kinguin client `bitloot serve` checks orders with (short timeout, one retry), or
    None without `BITLOOT_KINGUIN_API_KEY` (every check then relies on stored answers)."""
    key = settings.kinguin_api_key.get_secret_value() if settings.kinguin_api_key else ""
    if not key:
        log.warning("catalog.no_kinguin_key")
        return None
    return KinguinClient(
        settings.kinguin_api_url,
        key,
        timeout=min(settings.kinguin_timeout, CHECK_TIMEOUT),
        max_attempts=CHECK_ATTEMPTS,
        backoff_max=1,
    )


async def _read_products(
    client: KinguinClient | None, product_ids: list[str], *, concurrency: int | None = None
) -> dict[str, Answer]:
    """Kinguin's answers, read concurrently; a product Kinguin did not answer for is absent."""
    if client is None:
        return {}
    gate = asyncio.Semaphore(concurrency or len(product_ids) or 1)

    async def one(product_id: str) -> tuple[str, Answer | None]:
        async with gate:
            return product_id, await _read_product(client, product_id)

    answers = await asyncio.gather(*(one(pid) for pid in product_ids))
    return {pid: answer for pid, answer in answers if answer is not None}


async def _read_product(client: KinguinClient, product_id: str) -> Answer | None:
    try:
        product = await client.get_product(product_id)
    except ProductUnavailableError:
        return Answer(price=None, qty=0, text_qty=0)  # Kinguin's 404: nothing in stock
    except KinguinError as exc:
        log.warning("catalog.read_failed", product_id=product_id, kind=exc.kind, status=exc.status)
        return None
    return Answer(
        product.price,
        product.qty,
        product.text_qty,
        _kinguin_time(product.updated_at),
        facts_of(product),
    )


def _kinguin_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else None


async def _record(conn: Conn, product_id: str, answer: Answer) -> None:
    horizon = datetime.now(UTC) + MAX_CLOCK_SKEW
    updated_at = answer.updated_at if answer.updated_at and answer.updated_at <= horizon else None
    await repository.record_answer(
        conn,
        product_id,
        price=answer.price,
        qty=answer.qty,
        text_qty=answer.text_qty,
        updated_at=updated_at,
    )
    if answer.facts is not None:
        await repository.record_facts(conn, product_id, answer.facts)


async def refresh_catalog(res: Resources) -> dict[str, int]:
    """Read every active product from Kinguin again (a few at a time) and store the
    answers; how many were read and how many Kinguin did not answer for."""
    async with res.pool.connection() as conn:
        ids = await repository.active_product_ids(conn)
    read = await _read_products(res.kinguin_client, ids, concurrency=REFRESH_CONCURRENCY)
    async with res.pool.connection() as conn, conn.transaction():
        for product_id, answer in read.items():
            await _record(conn, product_id, answer)
    result = {"read": len(read), "failed": len(ids) - len(read)}
    log.info("catalog.refreshed", **result)
    return result


# --- Kinguin's product.update webhook -----------------------------------------------------


async def receive_product_update(
    conn: Conn, event: ProductUpdateEvent, raw_body: str
) -> EventOutcome:
    """Store the event once and apply it, in the caller's transaction."""
    dedup = (
        f"product:{event.product_id}:{event.updated_at.isoformat()}:{event.qty}:{event.text_qty}"
    )
    event_id = await inbox.store(
        conn,
        provider="kinguin",
        dedup_key=dedup,
        event_type="product.update",
        external_id=event.product_id,
        order_id=None,
        raw_body=raw_body,
    )
    if event_id is None:
        return EventOutcome(Outcome.DUPLICATE, duplicate=True)
    result = await apply_product_update(conn, event)
    await inbox.finish(conn, event_id, result)
    return result


async def apply_product_update(conn: Conn, event: ProductUpdateEvent) -> EventOutcome:
    """Store the event's stock (and price) unless it is not newer than what we hold.

    Dated beyond our clock plus `MAX_CLOCK_SKEW`: not used as the watermark (it would make
    every real event before that date stale), flagged, and the stored answer is only
    marked unchecked, so the next order reads the product again.
    """
    sold, watermark = await repository.lock_watermark(conn, event.product_id)
    if not sold:
        return EventOutcome(Outcome.UNKNOWN_PRODUCT)
    if event.updated_at > datetime.now(UTC) + MAX_CLOCK_SKEW:
        await repository.mark_unchecked(conn, event.product_id)
        return EventOutcome(Outcome.FUTURE_TIMESTAMP, needs_attention=True)
    if watermark is not None and event.updated_at <= watermark:
        return EventOutcome(Outcome.STALE)
    await repository.apply_update(
        conn,
        event.product_id,
        qty=event.qty,
        text_qty=event.text_qty,
        price=event.price,
        updated_at=event.updated_at,
    )
    return EventOutcome(Outcome.PRODUCT_UPDATED)


# --- listing ------------------------------------------------------------------------------


async def list_catalog(conn: Conn) -> list[CatalogRow]:
    """Every catalog row with Kinguin's last answer (for operators: `bitloot products list`)."""
    return await repository.catalog_rows(conn, active_only=False)


def availability_of(row: CatalogRow) -> Availability:
    """What a storefront is told about a row."""
    if row.kinguin_qty is None:
        return "unknown"
    answer = Answer(row.kinguin_price, row.kinguin_qty, row.kinguin_text_qty)
    return answer.availability(text_only=row.text_only, max_cost=row.max_cost)


async def public_catalog(conn: Conn) -> CatalogOut:
    """The active catalog for storefronts: price, currency, availability and the product's
    facts (platform, region, image, pre-order); never a cost."""
    rows = await repository.catalog_rows(conn, active_only=True)
    items = []
    for row in rows:
        availability = availability_of(row)
        items.append(
            CatalogItemOut(
                productId=row.product_id,
                name=row.name,
                price=row.price,
                currency=row.currency,
                availability=availability,
                available=availability == "in_stock",
                platform=row.platform,
                regionalLimitations=row.regional_limitations,
                excludedCountries=row.excluded_countries,
                imageUrl=row.image_url,
                isPreorder=row.is_preorder,
                releaseDate=row.release_date,
            )
        )
    return CatalogOut(items=items)
