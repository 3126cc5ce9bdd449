"""The orders domain: creating an order (priced on the server, idempotent, invoiced), reading
it for whoever may see it, and the one way any domain moves an order's status.

A NEW order is first checked against Kinguin's stock and price (`catalog.ensure_available`,
outside any transaction, before any row or invoice: its 409 or 503 leaves nothing behind).
Then creating it is two steps, because the invoice is an outbound call that must not hold
a transaction open: (1) one transaction inserts the order in `created` (or finds the order
its Idempotency-Key made) and issues the order access token; (2) outside it, NOWPayments is
asked for the invoice, and a second transaction records it and moves `created -> waiting`.
A crash or a provider error between the two leaves the order `created` with the error
noted; replaying the request with the same Idempotency-Key resumes at step 2, and a
concurrent replay that recorded its invoice first wins (the order is bound to that invoice).
Step (1) stores the order's language (`order_locale`) and copies each line's product name
and facts from `products`, as the stock check left them, onto `order_items`: what the
customer is shown from then on (the API, the key page, every email), whatever the catalog
says later.

An Idempotency-Key is what Stripe makes of it, and no bearer credential: it is scoped to
the caller (a signed-in user's `sub`; for a guest, the request's fingerprint, so another
guest reusing the key with another email makes an order of their own), it protects a retry
for 24 hours (then the key makes a new order), and a replay gets an access token only
while the order still awaits payment (`created`, `waiting`): after that it learns the
order's id and status, nothing that opens it.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
import structlog

from bitloot.auth import order_tokens
from bitloot.auth.tokens import Principal
from bitloot.catalog import service as catalog_service
from bitloot.db.connect import set_actor
from bitloot.i18n import DEFAULT_LOCALE, negotiate
from bitloot.nowpayments.client import NowPaymentsError
from bitloot.orders import repository
from bitloot.orders.models import (
    CreatedOrderOut,
    CreateOrderIn,
    OrderItemOut,
    OrderOut,
    OrderPageOut,
    Product,
    ProductInput,
)
from bitloot.resources import Resources
from bitloot.web.cursor import InvalidCursor, Position, decode_cursor, encode_cursor

log = structlog.get_logger(__name__)
Conn = psycopg.AsyncConnection[Any]

DEFAULT_PAGE = 20
MAX_PAGE = 100
_FIRST_PAGE = ("infinity", uuid.UUID(int=(1 << 128) - 1))
# A replay of POST /orders gets an access token only while the order awaits payment.
REPLAY_TOKEN_STATUSES = frozenset({"created", "waiting"})
# A longer `sub` is hashed into the scope (the column holds 200 characters at most).
_MAX_SUB_IN_SCOPE = 150


class OrderRejected(Exception):
    """The order cannot be made as asked; `problems` say why, each with its location."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(problems)} problem(s) with the order")
        self.problems = problems


class IdempotencyKeyReused(Exception):
    """The caller already used this Idempotency-Key for a different request."""


class InvoiceFailed(Exception):
    """NOWPayments did not create the invoice; the order stays `created` with the error
    noted, and a replay with the same Idempotency-Key retries the invoice."""

    def __init__(self, order_id: uuid.UUID, retry_after: float) -> None:
        super().__init__(f"no invoice for order {order_id}")
        self.order_id = order_id
        self.retry_after = retry_after


@dataclass(frozen=True)
class Access:
    """Who asks: the ownership test (`bitloot_order_visible` in SQL) is part of every
    customer query, not a check after it."""

    is_admin: bool = False
    user_id: str | None = None
    token_order_id: uuid.UUID | None = None

    @classmethod
    def of(cls, principal: Principal) -> Access:
        """The access a verified principal has."""
        if principal.kind == "admin":
            return cls(is_admin=True, user_id=principal.subject)
        if principal.kind == "order_token":
            return cls(token_order_id=principal.order_id)
        return cls(user_id=principal.subject)

    def sql_params(self) -> dict[str, Any]:
        """The parameters of `bitloot_order_visible` in the customer queries."""
        return {
            "is_admin": self.is_admin,
            "user_id": self.user_id,
            "token_order_id": self.token_order_id,
        }


ADMIN = Access(is_admin=True)


@dataclass(frozen=True)
class StoredOrder:
    """An order as read back, with who owns it."""

    view: OrderOut
    user_id: str | None
    invoice_error: str | None


@dataclass(frozen=True)
class PricedLine:
    """One order line priced from the catalog."""

    product: Product
    qty: int

    @property
    def amount(self) -> Decimal:
        return self.product.price * self.qty


@dataclass(frozen=True)
class PricedOrder:
    """An order priced on the server: every line in one currency."""

    lines: list[PricedLine]
    currency: str

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal("0"))


# --- creating an order ----------------------------------------------------------------------


def order_locale(body: CreateOrderIn, accept_language: str | None) -> str:
    """The customer's language: the body's `locale` (already reduced to one we speak, see
    `CreateOrderIn`), else the best of `Accept-Language`, else English."""
    return body.locale or negotiate(accept_language)


async def create_order(
    res: Resources,
    body: CreateOrderIn,
    *,
    user_id: str | None,
    idempotency_key: str | None,
    locale: str = DEFAULT_LOCALE,
) -> tuple[CreatedOrderOut, bool]:
    """Create (or, for the caller's Idempotency-Key, resume) the order and its invoice; the
    answer and whether the order is new. `OrderRejected`, `IdempotencyKeyReused`,
    `InvoiceFailed`; for a new order, before anything is stored, the catalog's 409
    (`OutOfStock`, `PriceUnavailable`) and 503 (`CatalogUnavailable`) problems. `locale`
    is the new order's language (a replay keeps the first request's)."""
    async with res.pool.connection() as conn:
        priced = await price_order(conn, body)
        replay = await _key_in_use(conn, body, user_id, idempotency_key)
    if not replay:
        # Before any order row or invoice, and outside any transaction: it may read Kinguin.
        await catalog_service.ensure_available(res, catalog_items(priced))
    async with res.pool.connection() as conn, conn.transaction():
        await set_actor(conn, f"user:{user_id}" if user_id else "guest", "POST /orders")
        order_id, created = await _insert_or_find(
            conn, priced, body, user_id, idempotency_key, locale=locale
        )
        stored = await get_order(conn, order_id, ADMIN)
        assert stored is not None
        view = stored.view
        # Issued with the order, in its transaction; a replay of an order that has been
        # paid (or has failed, expired, ...) gets none: the key is no bearer credential.
        token = (
            await order_tokens.mint(
                conn, order_id, purpose="checkout", ttl_seconds=res.settings.order_token_ttl
            )
            if view.status in REPLAY_TOKEN_STATUSES
            else None
        )
    if token is None:
        log.info("order.replayed", order_id=str(order_id), status=view.status)
        return _replayed_without_token(order_id, view), created
    invoice_url = view.invoiceUrl
    if view.status == "created":
        invoice_url = await _open_invoice(res, order_id, view.totalAmount, view.currency)
    answer = CreatedOrderOut(
        id=order_id,
        status="waiting" if view.status == "created" else view.status,
        totalAmount=view.totalAmount,
        currency=view.currency,
        locale=view.locale,
        invoiceUrl=invoice_url,
        accessToken=token,
    )
    log.info("order.created" if created else "order.replayed", order_id=str(order_id))
    return answer, created


def _replayed_without_token(order_id: uuid.UUID, view: OrderOut) -> CreatedOrderOut:
    """A replay's answer once the order has left `created`/`waiting`: its id and status,
    nothing that opens it (no token, no invoice)."""
    return CreatedOrderOut(
        id=order_id,
        status=view.status,
        totalAmount=view.totalAmount,
        currency=view.currency,
        locale=view.locale,
        invoiceUrl=None,
        accessToken=None,
    )


def request_fingerprint(body: CreateOrderIn) -> bytes:
    """SHA-256 of what a `POST /orders` asks for: the normalised email and the sorted items.
    The language is left out: a retry in another language is still the same purchase (it
    gets the first request's order, in the first request's language)."""
    canonical = {
        "email": str(body.email).strip().lower(),
        "items": sorted([item.productId, item.qty] for item in body.items),
    }
    return hashlib.sha256(json.dumps(canonical, separators=(",", ":")).encode()).digest()


def idempotency_scope(user_id: str | None, fingerprint: bytes) -> str:
    """Whose Idempotency-Key it is: a signed-in user's `sub`; for a guest, the request
    itself (its fingerprint), since nothing else tells one guest from another."""
    if user_id is None:
        return f"guest:{fingerprint.hex()}"
    if len(user_id) <= _MAX_SUB_IN_SCOPE:
        return f"user:{user_id}"
    return f"user-sha256:{hashlib.sha256(user_id.encode()).hexdigest()}"


async def _key_in_use(
    conn: Conn, body: CreateOrderIn, user_id: str | None, idempotency_key: str | None
) -> bool:
    """Whether the caller's Idempotency-Key already made an order (a replay, or a key reused
    for another request): no stock check then, the order exists or is refused anyway."""
    if idempotency_key is None:
        return False
    scope = idempotency_scope(user_id, request_fingerprint(body))
    return await repository.idempotency_key_in_use(conn, scope, idempotency_key)


def catalog_items(priced: PricedOrder) -> list[catalog_service.Item]:
    """What each line asks of Kinguin: keys, at most `max_cost` each, text keys or any."""
    return [
        catalog_service.Item(
            product_id=line.product.product_id,
            qty=line.qty,
            max_cost=line.product.max_cost,
            text_only=line.product.text_only,
        )
        for line in priced.lines
    ]


async def price_order(conn: Conn, body: CreateOrderIn) -> PricedOrder:
    """Price the order from `products`; every problem at once in `OrderRejected`."""
    catalog, problems = await _check_products(
        conn, [(index, item.productId) for index, item in enumerate(body.items)]
    )
    if problems:
        raise OrderRejected(problems)
    lines = [PricedLine(catalog[item.productId], item.qty) for item in body.items]
    return PricedOrder(lines=lines, currency=lines[0].product.currency)


async def product_problems(conn: Conn, named: list[tuple[int, str]]) -> list[dict[str, Any]]:
    """The catalog problems of `(item index, productId)` pairs, for a body that failed
    validation elsewhere: the client then learns every problem in one answer."""
    _, problems = await _check_products(conn, named)
    return problems


async def _check_products(
    conn: Conn, named: list[tuple[int, str]]
) -> tuple[dict[str, Product], list[dict[str, Any]]]:
    catalog = await repository.products_by_ids(conn, [product_id for _, product_id in named])
    problems: list[dict[str, Any]] = []
    seen: set[str] = set()
    currencies: set[str] = set()
    for index, product_id in named:
        loc = ["body", "items", index, "productId"]
        if product_id in seen:
            problems.append({"loc": loc, "msg": "product listed twice; use qty instead"})
            continue
        seen.add(product_id)
        product = catalog.get(product_id)
        if product is None or not product.active:
            problems.append({"loc": loc, "msg": "unknown or unavailable product"})
            continue
        currencies.add(product.currency)
    if len(currencies) > 1:
        problems.append(
            {"loc": ["body", "items"], "msg": "products are priced in different currencies"}
        )
    return catalog, problems


async def _insert_or_find(
    conn: Conn,
    priced: PricedOrder,
    body: CreateOrderIn,
    user_id: str | None,
    idempotency_key: str | None,
    *,
    locale: str,
) -> tuple[uuid.UUID, bool]:
    order_id = uuid.uuid4()
    if idempotency_key is not None:
        # The key is claimed first, under the id the order is about to get (the foreign
        # key is deferred): a concurrent request with the same key waits on its row here,
        # then finds this order rather than making a second one.
        fingerprint = request_fingerprint(body)
        scope = idempotency_scope(user_id, fingerprint)
        if not await repository.claim_idempotency_key(
            conn, scope=scope, key=idempotency_key, fingerprint=fingerprint, order_id=order_id
        ):
            existing, made_for = await repository.idempotency_key_order(
                conn, scope, idempotency_key
            )
            if made_for != fingerprint:
                raise IdempotencyKeyReused("the key was used for a different request")
            return existing, False
    await repository.insert_order(
        conn,
        order_id=order_id,
        user_id=user_id,
        email=str(body.email),
        currency=priced.currency,
        total=priced.total,
        locale=locale,
    )
    await repository.insert_order_items(
        conn,
        order_id,
        [
            repository.NewLine(
                line.product.product_id, line.qty, line.product.price, line.product.max_cost
            )
            for line in priced.lines
        ],
    )
    return order_id, True


async def _open_invoice(res: Resources, order_id: uuid.UUID, total: Decimal, currency: str) -> str:
    """Ask NOWPayments for the invoice (outside any transaction) and record the answer."""
    public = res.settings.public_url
    try:
        invoice = await res.nowpayments_client.create_invoice(
            price_amount=total,
            price_currency=currency,
            order_id=str(order_id),
            order_description=f"BitLoot order {order_id}",
            ipn_callback_url=f"{public}/webhooks/nowpayments",
            # No token here: this URL is shown to NOWPayments; the key page asks for the link.
            success_url=f"{public}/orders/{order_id}/key",
        )
    except NowPaymentsError as exc:
        async with res.pool.connection() as conn, conn.transaction():
            await repository.record_invoice_error(
                conn, order_id, f"NOWPayments {exc.code or exc.status or 'error'}"
            )
        log.warning("order.invoice_failed", order_id=str(order_id), code=exc.code)
        raise InvoiceFailed(order_id, exc.retry_after or 5) from None
    async with res.pool.connection() as conn, conn.transaction():
        await set_actor(conn, "api", "invoice created")
        if not await repository.record_invoice(conn, order_id, invoice.id, invoice.invoice_url):
            # A concurrent replay of the same Idempotency-Key recorded its invoice first:
            # answer with that one, the invoice the order is bound to (ours stays unused).
            stored = await get_order(conn, order_id, ADMIN)
            if stored is not None and stored.view.invoiceUrl:
                log.warning("order.invoice_superseded", order_id=str(order_id))
                return stored.view.invoiceUrl
    return invoice.invoice_url


# --- reading orders -------------------------------------------------------------------------


async def get_order(conn: Conn, order_id: uuid.UUID, access: Access) -> StoredOrder | None:
    """The order with its lines, or None when it does not exist or `access` may not see it."""
    row = await repository.visible_order(conn, order_id, access.sql_params())
    if row is None:
        return None
    return StoredOrder(
        view=order_out(row), user_id=row["user_id"], invoice_error=row["invoice_error"]
    )


async def list_user_orders(
    conn: Conn, user_id: str, *, cursor: str | None, limit: int
) -> OrderPageOut:
    """One page of the user's orders, newest first, after `cursor`. `InvalidCursor` for a
    cursor that is not one of this list's (an order id must be a UUID)."""
    after: tuple[Any, Any] = _FIRST_PAGE
    if cursor:
        position = decode_cursor(cursor)
        try:
            after = (position.created_at, uuid.UUID(position.id))
        except ValueError:
            raise InvalidCursor("not a cursor from this list") from None
    # One more than asked says whether a next page exists.
    rows = await repository.user_orders_page(conn, user_id, after, limit + 1)
    page = rows[:limit]
    next_cursor = (
        encode_cursor(Position(page[-1]["created_at"], str(page[-1]["id"])))
        if len(rows) > limit
        else None
    )
    return OrderPageOut(items=[order_out(row) for row in page], nextCursor=next_cursor)


def order_out(row: dict[str, Any]) -> OrderOut:
    """The API view of an order row."""
    return OrderOut(
        id=row["id"],
        email=row["email"],
        locale=row["locale"],
        status=row["status"],
        fulfillmentStatus=row["fulfillment_status"],
        statusReason=row["status_reason"] or row["fulfillment_error"],
        totalAmount=row["total_amount"],
        currency=row["currency"],
        invoiceUrl=row["invoice_url"],
        items=[OrderItemOut.model_validate(i) for i in row["items"]],
        paidAt=row["paid_at"],
        fulfilledAt=row["fulfilled_at"],
        createdAt=row["created_at"],
        updatedAt=row["updated_at"],
    )


# --- moving an order (for the other domains) ------------------------------------------------


async def move_status(
    conn: Conn,
    order_id: uuid.UUID,
    target: str,
    *,
    from_statuses: list[str],
    reason: str | None,
    current: str | None = None,
) -> bool:
    """Move the order to `target` if it is in one of `from_statuses`; False if it was not.

    The database's state machine decides what is legal. An order still `created` (its
    invoice answer was lost) first moves to `waiting`, the only way out of `created`;
    `current`, when the caller read it under the row lock, saves that step otherwise.
    """
    hop = current == "created" if current is not None else "created" in from_statuses
    if hop and target != "waiting":
        await repository.move_order_status(conn, order_id, ["created"], "waiting", None)
    return await repository.move_order_status(conn, order_id, from_statuses, target, reason)


async def expire_abandoned(conn: Conn) -> int:
    """Expire orders never invoiced (a day) or never paid (8 days); how many."""
    return await repository.expire_abandoned_orders(conn)


# --- the catalog ----------------------------------------------------------------------------


async def add_product(conn: Conn, product: ProductInput) -> Product:
    """Add a catalog row, or update the one with this product id."""
    return await repository.upsert_product(conn, product)
