from __future__ import annotations

from typing import Any

import aiohttp


async def test_guest_order_gets_invoice_and_token(api: Any, conn: Any) -> None:
    await conn.execute(
        "INSERT INTO products (product_id, name, price, currency, max_cost)"
        " VALUES ('5c9b5f6b2539a4e8f172916a', 'Game', 14.99, 'eur', 12)"
    )
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{api.url}/orders",
            json={
                "email": "ada@example.com",
                "items": [{"productId": "5c9b5f6b2539a4e8f172916a", "qty": 2}],
            },
        ) as r:
            body = await r.json()
    assert r.status == 201, body
    assert body["status"] == "waiting" and body["totalAmount"] == "29.98"
