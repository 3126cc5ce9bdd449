from __future__ import annotations

import aiohttp
from stack import Stack

from bitloot.sim.kinguin_catalog import TEXT_PRODUCT_ID


async def test_paid_order_is_fulfilled(stack: Stack) -> None:
    await stack.start_sim()
    await stack.start_api()
    stack.start_worker()
    async with aiohttp.ClientSession() as http:
        order = await stack.create_order(http, [{"productId": TEXT_PRODUCT_ID, "qty": 2}])
        await stack.pay(http, order["id"])
        rows = await stack.wait_until([order["id"]], timeout=60)
    assert rows[order["id"]][:2] == ("fulfilled", "fulfilled"), (
        rows,
        stack.log_text("worker")[-3000:],
    )
