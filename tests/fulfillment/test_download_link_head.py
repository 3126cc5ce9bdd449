"""`HEAD /fulfillment/{id}/download-link` is refused (405, `Allow: GET`): aiohttp would answer
it by running the GET handler, which issues links and records an access event."""

from __future__ import annotations

from shop_support import OWNER, Shop


async def test_head_issues_nothing_and_records_nothing(shop: Shop) -> None:
    order = await shop.fulfilled_order(OWNER)
    path = f"{shop.api_url}/fulfillment/{order.id}/download-link"
    headers = {"Authorization": f"Bearer {order.token}"}
    async with shop.http.head(path, headers=headers) as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "GET"
        assert resp.headers["Content-Type"].startswith("application/problem+json")
        assert await resp.read() == b""
    assert await shop.scalar("SELECT count(*) FROM key_access_events") == 0

    # GET is unchanged: one event per key.
    reply = await shop.get(f"/fulfillment/{order.id}/download-link", order.token)
    assert reply.status == 200, reply.body
    assert await shop.scalar("SELECT count(*) FROM key_access_events") == len(reply.body["keys"])


async def test_the_other_customer_reads_still_answer_head(shop: Shop) -> None:
    order = await shop.create_order(OWNER)
    headers = {"Authorization": f"Bearer {order.token}"}
    for path in (f"/orders/{order.id}", f"/fulfillment/{order.id}/status"):
        async with shop.http.head(f"{shop.api_url}{path}", headers=headers) as resp:
            assert resp.status == 200, path
