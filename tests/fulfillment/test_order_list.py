"""`GET /orders`: the caller's own orders, newest first, in keyset pages that stay put while
new orders arrive."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from shop_support import ADMIN, OTHER, OWNER, Conn, Shop

from bitloot.db.queries import QuerySet

BASE = datetime(2025, 1, 1, tzinfo=UTC)


async def insert_order(conn: Conn, user_id: str | None, created_at: datetime | None) -> uuid.UUID:
    cur = await conn.execute(
        "INSERT INTO orders (user_id, email, currency, total_amount, created_at)"
        " VALUES (%s, 'ada@example.com', 'eur', %s, coalesce(%s, now())) RETURNING id",
        (user_id, Decimal("9.99"), created_at),
    )
    row = await cur.fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


async def test_pages_are_stable_while_newer_orders_arrive(shop: Shop) -> None:
    originals: list[tuple[datetime, uuid.UUID]] = []
    for minutes in [0, 1, 2, 2, 2, 3, 5, 8, 8, 13]:  # ties on created_at: the id breaks them
        at = BASE + timedelta(minutes=minutes)
        originals.append((at, await insert_order(shop.conn, OWNER, at)))
        await insert_order(shop.conn, OTHER, at)
    expected = [oid for _, oid in sorted(originals, reverse=True)]

    token = shop.user_token(OWNER)
    seen: list[str] = []
    cursor: str | None = ""
    pages = 0
    while cursor is not None:
        reply = await shop.get(f"/orders?limit=3&cursor={cursor}", token)
        assert reply.status == 200, reply.body
        assert len(reply.body["items"]) <= 3
        seen += [item["id"] for item in reply.body["items"]]
        cursor = reply.body["nextCursor"]
        pages += 1
        # Newer orders arrive between pages; they belong before the pages already read.
        await insert_order(shop.conn, OWNER, None)
        await insert_order(shop.conn, OWNER, datetime.now(UTC) + timedelta(days=1))
    assert seen == [str(oid) for oid in expected]
    assert pages == 4

    first = await shop.get("/orders", token)
    assert len(first.body["items"]) == 10 + 2 * pages  # every order of OWNER by now
    assert first.body["nextCursor"] is None


async def test_default_page_is_twenty_and_items_look_like_get_order(shop: Shop) -> None:
    order = await shop.create_order(OWNER)
    for _ in range(24):
        await insert_order(shop.conn, OWNER, BASE)
    reply = await shop.get("/orders", shop.user_token(OWNER))
    assert reply.status == 200
    assert reply.headers["Cache-Control"] == "no-store"
    assert len(reply.body["items"]) == 20 and reply.body["nextCursor"]
    newest = reply.body["items"][0]
    assert newest == (await shop.get(f"/orders/{order.id}", order.token)).body


async def test_only_the_callers_orders_are_listed(shop: Shop) -> None:
    mine = await insert_order(shop.conn, OWNER, BASE)
    await insert_order(shop.conn, OTHER, BASE)
    await insert_order(shop.conn, None, BASE)  # a guest order
    reply = await shop.get("/orders", shop.user_token(OWNER))
    assert [i["id"] for i in reply.body["items"]] == [str(mine)]
    # An admin lists their own orders like anyone (none here), not everybody's.
    admin = await shop.get("/orders", shop.user_token(ADMIN, admin=True))
    assert (admin.status, admin.body) == (200, {"items": [], "nextCursor": None})


async def test_only_a_valid_customer_token_may_list(shop: Shop) -> None:
    order = await shop.create_order(OWNER)
    tokens: dict[str, str | None] = {
        "owner": shop.user_token(OWNER),
        "admin": shop.user_token(ADMIN, admin=True),
        "order token": order.token,
        "expired": shop.expired_user_token(OWNER),
        "alg none": shop.unsigned_token(OWNER),
        "signed with another key": shop.foreign_token(OWNER),
        "no token": None,
    }
    got = {who: (await shop.get("/orders", token)).status for who, token in tokens.items()}
    assert got == {
        "owner": 200,
        "admin": 200,
        "order token": 401,
        "expired": 401,
        "alg none": 401,
        "signed with another key": 401,
        "no token": 401,
    }


async def test_bad_limit_is_422(shop: Shop) -> None:
    for limit in ["0", "101", "-1", "abc", "1.5", "%C2%B2", "9" * 5000]:
        reply = await shop.get(f"/orders?limit={limit}", shop.user_token(OWNER))
        assert reply.status == 422, limit
        assert reply.body["errors"][0]["loc"] == ["query", "limit"]
    assert (await shop.get("/orders?limit=100", shop.user_token(OWNER))).status == 200


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


MALFORMED_CURSORS = [
    "%%%",
    "not-base64!",
    b64(b"\xff\xfe"),
    b64(b"{}"),
    b64(b'["2025-01-01T00:00:00+00:00"]'),
    b64(b'["yesterday", "00000000-0000-0000-0000-000000000000"]'),
    b64(b'["2025-01-01T00:00:00", "00000000-0000-0000-0000-000000000000"]'),  # no zone
    b64(b'["2025-01-01T00:00:00+00:00", "not-a-uuid"]'),
    b64(b'["2025-01-01T00:00:00+00:00", 7]'),
    "A" * 300,
]


async def test_malformed_cursor_is_400(shop: Shop) -> None:
    for cursor in MALFORMED_CURSORS:
        reply = await shop.get(f"/orders?cursor={cursor}", shop.user_token(OWNER))
        assert reply.status == 400, (cursor, reply.body)


async def test_the_list_query_can_walk_the_user_index(shop: Shop) -> None:
    await insert_order(shop.conn, OWNER, BASE)
    sql = QuerySet("bitloot.orders")["list_user_orders"]
    params = {
        "user_id": OWNER,
        "after_created_at": BASE,
        "after_id": uuid.uuid4(),
        "limit": 21,
    }
    async with shop.conn.transaction():
        await shop.conn.execute("SET LOCAL enable_seqscan = off")
        cur = await shop.conn.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in await cur.fetchall())
    outer = plan.split("SubPlan")[0]  # the order lines' subquery sorts; the pages must not
    assert "Index Scan using orders_user_created_idx" in outer, plan
    assert "ROW(created_at, id) < ROW(" in outer and "Sort" not in outer, plan
