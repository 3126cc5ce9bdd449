"""Customer access to delivered keys: the order's delivery status, and download links.

Ownership is part of every query (`bitloot.orders.service.Access`), so an order the caller
may not see is indistinguishable from one that does not exist. Only live keys are listed
and served (a revoked key, replaced or refunded, never is). Issuing links records one
access event per key and marks the keys accessed, in the caller's transaction: a link is
never handed out without its record. Functions take the connection and never commit.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

import psycopg
from psycopg.rows import class_row, dict_row

from bitloot import i18n
from bitloot.auth.tokens import Principal
from bitloot.db.queries import QuerySet
from bitloot.fulfillment.models import (
    DownloadLinksOut,
    FulfillmentStatusOut,
    KeyLinkOut,
    KeyStatusOut,
    OrderItemOut,
)
from bitloot.i18n.products import ProductFacts, describe
from bitloot.orders.service import Access
from bitloot.storage.base import ObjectStorage
from bitloot.text import printable_text
from bitloot.vault.crypto import ALGORITHM, MasterKeyRing, unwrap_data_key
from bitloot.web.errors import ApiError, Conflict, NotFound

Q = QuerySet("bitloot.fulfillment", "access_queries.sql")
Conn = psycopg.AsyncConnection[Any]

USER_AGENT_MAX_CHARS = 256
AVAILABLE = ("stored", "accessed")


class OrderNotFulfilled(Conflict):
    """409: the order has no keys to hand out yet (or never will: see `fulfillmentStatus`)."""

    slug = "order-not-fulfilled"
    title = "Order not fulfilled"

    def __init__(self, status: str, fulfillment_status: str) -> None:
        super().__init__(
            "The order's keys are not ready; poll its status until it is fulfilled.",
            extras={"orderStatus": status, "fulfillmentStatus": fulfillment_status},
        )


class KeysGone(ApiError):
    """410: the keys can no longer be downloaded (expired, deleted, revoked, or the order
    refunded)."""

    status = 410
    slug = "keys-gone"
    title = "Keys no longer available"

    def __init__(self, detail: str, keys: list[dict[str, str]] | None = None) -> None:
        super().__init__(detail, extras={"keys": keys or []})


class KeyReplaced(ApiError):
    """410: this key was replaced by an admin (it was faulty); `replacedBy` is the new one."""

    status = 410
    slug = "key-replaced"
    title = "Key replaced"

    def __init__(self, key_id: str, replaced_by: str | None) -> None:
        super().__init__(
            "This key was replaced by a new one; ask for the order's links again to get it.",
            extras={"keyId": key_id, "replacedBy": replaced_by},
        )


@dataclass(frozen=True)
class Requester:
    """Who asks for links and from where, as the access events record it."""

    actor_kind: Literal["user", "order_token", "admin"]
    actor_id: str
    client_ip: str | None
    user_agent: str | None

    @classmethod
    def of(cls, principal: Principal, client_ip: str | None, user_agent: str | None) -> Requester:
        """The requester behind a verified principal (for an order token, the order id)."""
        # A header may carry control characters or undecodable bytes (surrogate-escaped),
        # which a text column refuses: keep what prints, and not much of it.
        agent = printable_text(user_agent, USER_AGENT_MAX_CHARS)
        return cls(principal.kind, principal.subject, client_ip, agent)


@dataclass(frozen=True)
class _KeyRow:
    key_id: str
    product_id: str | None
    object_key: str
    content_type: str
    wrapped_data_key: bytes
    master_key_id: str
    status: str
    revoked_reason: str | None
    replaced_by: str | None


def _params(order_id: uuid.UUID, access: Access) -> dict[str, Any]:
    return {"order_id": order_id, **access.sql_params()}


async def fulfillment_status(
    conn: Conn, order_id: uuid.UUID, access: Access, lang: str | None = None
) -> FulfillmentStatusOut | None:
    """The order's statuses, what was bought (in `lang` if we speak it, else the order's
    language) and its keys' statuses; None when missing or not visible."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["fulfillment_status"], _params(order_id, access))
        row = await cur.fetchone()
    if row is None:
        return None
    order_locale = i18n.supported(row["locale"]) or i18n.DEFAULT_LOCALE
    locale = i18n.supported(lang) or order_locale
    return FulfillmentStatusOut(
        orderId=row["id"],
        orderStatus=row["status"],
        fulfillmentStatus=row["fulfillment_status"],
        locale=order_locale,
        items=[_item(facts, locale) for facts in row["items"]],
        keys=[KeyStatusOut.model_validate(k) for k in row["keys"]],
        updatedAt=row["updated_at"],
    )


def _item(row: dict[str, Any], locale: str) -> OrderItemOut:
    """One order line (as json_build_object wrote it) in words, in `locale`."""
    release = row["release_date"]
    view = describe(
        ProductFacts(
            product_id=row["product_id"],
            name=row["name"],
            qty=row["qty"],
            platform=row["platform"],
            regional_limitations=row["regional_limitations"],
            excluded_countries=tuple(row["excluded_countries"] or ()),
            is_preorder=row["is_preorder"],
            release_date=date.fromisoformat(release) if release else None,
        ),
        locale,
    )
    return OrderItemOut(
        productId=view.product_id,
        name=view.name,
        qty=view.qty,
        platform=view.platform,
        platformCode=view.platform_code,
        region=view.region,
        excluded=view.excluded,
        steps=view.steps,
        redeemUrl=view.redeem_url,
        redeemLabel=view.redeem_label,
        preorder=view.preorder,
    )


async def issue_download_links(
    conn: Conn,
    order_id: uuid.UUID,
    access: Access,
    requester: Requester,
    *,
    ring: MasterKeyRing,
    storage: ObjectStorage,
    ttl_seconds: int,
    key_id: str | None = None,
) -> DownloadLinksOut | None:
    """Signed URLs and data keys for every live key of a fulfilled order (or only `key_id`),
    with the access recorded; None when missing or not visible, `OrderNotFulfilled`,
    `KeysGone`, `KeyReplaced` or (no such key) `NotFound` else. A revoked key (replaced,
    or its order refunded) is never served."""
    cur = await conn.execute(Q["order_for_download"], _params(order_id, access))
    order = await cur.fetchone()
    if order is None:
        return None
    status, fulfillment_status = order
    if status == "refunded":
        raise KeysGone("The order was refunded; its keys are no longer available.")
    if status != "fulfilled":
        raise OrderNotFulfilled(status, fulfillment_status)
    async with conn.cursor(row_factory=class_row(_KeyRow)) as kcur:
        await kcur.execute(Q["keys_for_download"], {"order_id": order_id})
        keys = _live_keys(await kcur.fetchall(), key_id)
    # All or nothing: the keys of an order share one retention period, so a partial answer
    # only follows a manual change, and would read like a complete delivery. (A replacement
    # key starts a retention period of its own: once the first keys expire, `?keyId=` still
    # serves it.)
    gone = [{"keyId": k.key_id, "status": k.status} for k in keys if k.status not in AVAILABLE]
    if gone:
        raise KeysGone("The order's keys have expired and are no longer available.", gone)
    # Whole seconds, taken before signing: every URL lives at least until `expires_at`.
    expires_at = int(time.time()) + ttl_seconds
    links = [await _link(k, order_id, ring, storage, ttl_seconds) for k in keys]
    await conn.execute(
        Q["record_key_access"],
        {
            "order_id": order_id,
            "key_ids": [k.key_id for k in keys],
            "actor_kind": requester.actor_kind,
            "actor_id": requester.actor_id,
            "client_ip": requester.client_ip,
            "user_agent": requester.user_agent,
        },
    )
    return DownloadLinksOut(
        orderId=order_id, expiresAt=datetime.fromtimestamp(expires_at, UTC), keys=links
    )


def _live_keys(keys: list[_KeyRow], key_id: str | None) -> list[_KeyRow]:
    """The keys to serve: every live one, or the one asked for if it is live."""
    if key_id is not None:
        asked = next((k for k in keys if k.key_id == key_id), None)
        if asked is None:
            raise NotFound("The order has no such key.")
        keys = [asked]
    revoked = [k for k in keys if k.revoked_reason is not None]
    if key_id is not None and revoked:
        if revoked[0].revoked_reason == "replaced":
            raise KeyReplaced(key_id, revoked[0].replaced_by)
        raise KeysGone(f"The key was revoked ({revoked[0].revoked_reason}).")
    live = [k for k in keys if k.revoked_reason is None]
    if keys and not live:
        raise KeysGone("The order's keys were revoked and are no longer available.")
    return live


async def _link(
    key: _KeyRow, order_id: uuid.UUID, ring: MasterKeyRing, storage: ObjectStorage, ttl: int
) -> KeyLinkOut:
    data_key = unwrap_data_key(
        key.wrapped_data_key,
        master_key_id=key.master_key_id,
        order_id=order_id,
        key_id=key.key_id,
        ring=ring,
    )
    return KeyLinkOut(
        keyId=key.key_id,
        productId=key.product_id,
        contentType=key.content_type,
        signedUrl=await storage.signed_get_url(key.object_key, ttl),
        dataKey=data_key.to_base64(),
        algorithm=ALGORITHM,
    )
