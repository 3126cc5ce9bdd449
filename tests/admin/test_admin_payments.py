"""`GET /admin/payments` (pages, filters, validation) and `GET /admin/payments/{id}`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from admin_support import Conn, Tokens, insert_order, insert_payment, paid_order, request
from yarl import URL

BASE = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


async def _walk(
    http: aiohttp.ClientSession, api: Any, tokens: Tokens, params: dict[str, str]
) -> list[str]:
    """Every payment id of the list, page by page."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        page_params = dict(params, **({"cursor": cursor} if cursor else {}))
        status, page = await request(
            http, "GET", f"{api.url}/admin/payments", headers=tokens.admin, params=page_params
        )
        assert status == 200, page
        ids += [p["paymentId"] for p in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            return ids


async def test_pages_are_stable_while_newer_payments_arrive(
    api: Any, conn: Conn, http: aiohttp.ClientSession, tokens: Tokens
) -> None:
    order_id = await paid_order(conn)
    # Three payments per second, so page boundaries fall inside runs of equal created_at.
    original = {f"p{i:03d}": BASE - timedelta(seconds=i // 3) for i in range(31)}
    for payment_id, at in original.items():
        await insert_payment(conn, order_id, payment_id, created_at=at)
    expected = sorted(original, key=lambda p: (original[p], p), reverse=True)

    seen: list[str] = []
    cursor: str | None = None
    for batch in range(100):
        params = {"limit": "7", **({"cursor": cursor} if cursor else {})}
        status, page = await request(
            http, "GET", f"{api.url}/admin/payments", headers=tokens.admin, params=params
        )
        assert status == 200, page
        seen += [p["paymentId"] for p in page["items"]]
        # Newer payments land between fetches (created now, after every original one).
        for n in range(2):
            await insert_payment(conn, order_id, f"new-{batch}-{n}")
        cursor = page["nextCursor"]
        if cursor is None:
            break

    assert len(seen) == len(set(seen)), "a payment appeared twice"
    assert [p for p in seen if p in original] == expected


async def test_items_carry_money_as_exact_strings(
    api: Any, conn: Conn, http: aiohttp.ClientSession, tokens: Tokens
) -> None:
    order_id = await paid_order(conn)
    await insert_payment(conn, order_id, "5077125051", created_at=BASE)
    status, page = await request(http, "GET", f"{api.url}/admin/payments", headers=tokens.admin)
    assert status == 200, page
    assert page == {
        "items": [
            {
                "paymentId": "5077125051",
                "orderId": str(order_id),
                "status": "finished",
                "priceAmount": "14.99",
                "priceCurrency": "eur",
                "payAmount": "0.000312",
                "payCurrency": "btc",
                "actuallyPaid": "0.000312",
                "createdAt": "2025-03-01T12:00:00Z",
                "updatedAt": page["items"][0]["updatedAt"],
            }
        ],
        "nextCursor": None,
    }


async def test_filters_by_status_date_range_and_email(
    api: Any, conn: Conn, http: aiohttp.ClientSession, tokens: Tokens
) -> None:
    ada = await paid_order(conn, email="Ada@Example.com")
    bob = await insert_order(conn, email="bob@example.com")
    rows = [
        ("a-old", ada, "finished", BASE - timedelta(days=2)),
        ("a-from", ada, "partially_paid", BASE - timedelta(days=1)),
        ("a-mid", ada, "finished", BASE - timedelta(hours=1)),
        ("a-to", ada, "finished", BASE),
        ("b-mid", bob, "waiting", BASE - timedelta(hours=2)),
        ("b-new", bob, "finished", BASE + timedelta(days=1)),
    ]
    for payment_id, order_id, status, at in rows:
        await insert_payment(conn, order_id, payment_id, status=status, created_at=at)
    day_before = (BASE - timedelta(days=1)).isoformat()

    async def ids(**params: str) -> list[str]:
        return await _walk(http, api, tokens, {"limit": "2", **params})

    assert await ids(status="finished") == ["b-new", "a-to", "a-mid", "a-old"]
    # `from` is inclusive, `to` exclusive.
    assert await ids(**{"from": day_before, "to": BASE.isoformat()}) == ["a-mid", "b-mid", "a-from"]
    assert await ids(email="ADA@example.COM") == ["a-to", "a-mid", "a-from", "a-old"]
    assert await ids(email="ada@example.com", status="finished", to=BASE.isoformat()) == [
        "a-mid",
        "a-old",
    ]
    assert await ids(email="nobody@example.com") == []
    # An unescaped `+` in the offset arrives as a space; it still means +00:00.
    url = URL(f"{api.url}/admin/payments?from=2025-03-01T12:00:00+00:00", encoded=True)
    async with http.get(url, headers=tokens.admin) as resp:
        page = await resp.json()
    assert [p["paymentId"] for p in page["items"]] == ["b-new", "a-to"]


BAD_QUERIES: list[tuple[list[tuple[str, str]], list[str]]] = [
    ([("status", "paid")], ["query", "status"]),
    ([("from", "2025-03-01T12:00:00")], ["query", "from"]),
    ([("to", "yesterday")], ["query", "to"]),
    ([("from", "2025-03-02T00:00:00Z"), ("to", "2025-03-01T00:00:00Z")], ["query"]),
    ([("limit", "0")], ["query", "limit"]),
    ([("limit", "101")], ["query", "limit"]),
    ([("limit", "ten")], ["query", "limit"]),
    ([("cursor", "bm90LWEtY3Vyc29y")], ["query", "cursor"]),
    ([("state", "finished")], ["query", "state"]),
    ([("status", "finished"), ("status", "failed")], ["query", "status"]),
]


async def test_bad_query_parameters_are_422(
    api: Any, http: aiohttp.ClientSession, tokens: Tokens
) -> None:
    for params, loc in BAD_QUERIES:
        url = f"{api.url}/admin/payments"
        async with http.get(url, headers=tokens.admin, params=params) as resp:
            problem = await resp.json()
        assert resp.status == 422, (params, problem)
        assert problem["errors"][0]["loc"] == loc, (params, problem)


async def test_payment_detail_lists_its_ipns_oldest_first(
    api: Any, conn: Conn, http: aiohttp.ClientSession, tokens: Tokens
) -> None:
    order_id = await paid_order(conn)
    await insert_payment(conn, order_id, "pay-9", created_at=BASE)
    await insert_payment(conn, order_id, "pay-other", created_at=BASE)
    for dedup, status, payment_id, attention in [
        ("pay-9:confirming", "confirming", "pay-9", False),
        ("pay-9:finished", "finished", "pay-9", True),
        ("pay-other:finished", "finished", "pay-other", False),
    ]:
        await conn.execute(
            "INSERT INTO webhook_events (provider, dedup_key, event_type, external_id, order_id,"
            " raw_body, signature_variant, processed_at, outcome, needs_attention)"
            " VALUES ('nowpayments', %s, %s, %s, %s, %s, 'sorted', now(), 'order_paid', %s)",
            (dedup, status, payment_id, order_id, f'{{"payment_status":"{status}"}}', attention),
        )

    status, detail = await request(
        http, "GET", f"{api.url}/admin/payments/pay-9", headers=tokens.admin
    )
    assert status == 200, detail
    assert detail["paymentId"] == "pay-9" and detail["orderStatus"] == "paid"
    assert detail["customerEmail"] == "ada@example.com"
    assert [(i["status"], i["needsAttention"], i["rawBody"]) for i in detail["ipns"]] == [
        ("confirming", False, '{"payment_status":"confirming"}'),
        ("finished", True, '{"payment_status":"finished"}'),
    ]
    assert {i["signatureVariant"] for i in detail["ipns"]} == {"sorted"}

    status, problem = await request(
        http, "GET", f"{api.url}/admin/payments/nope", headers=tokens.admin
    )
    assert status == 404, problem
