"""The simulator's key return (`POST /v2/order/{id}/keys/return`), driven over HTTP by our own
client (`KinguinClient.return_keys`): one request per order, refused after 24 h, for a
pre-order, or (injected) for a claimed key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from bitloot.kinguin.client import KinguinClient
from bitloot.kinguin.errors import KinguinResponseError, OrderNotFoundError
from bitloot.kinguin.models import Order, OrderProductRequest
from bitloot.sim.app import SimConfig
from bitloot.sim.kinguin_catalog import TEXT_PRODUCT_ID


@pytest.fixture
async def kinguin(sim: Any) -> AsyncIterator[KinguinClient]:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{sim.url}/kinguin/sim/delivery", json={"delay": 0, "gradual": False}
        ) as resp:
            assert resp.status < 300
    client = KinguinClient(
        f"{sim.url}/kinguin", SimConfig().kinguin_api_key, backoff_base=0.01, backoff_max=0.02
    )
    async with client:
        yield client


async def _control(sim: Any, path: str, body: Any) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{sim.url}/kinguin/sim{path}", json=body) as resp:
            assert resp.status < 300, await resp.text()


async def _delivered_order(kinguin: KinguinClient, external_id: str, qty: int = 2) -> Order:
    async def nothing(_exc: Exception) -> None:
        return None

    placed = await kinguin.place_order(
        [OrderProductRequest(product_id=TEXT_PRODUCT_ID, qty=qty, price=Decimal("15"))],
        external_id,
        recover=nothing,
    )
    assert len(await kinguin.get_keys(placed.order_id)) == qty
    return placed


async def test_delivered_keys_go_back_once(kinguin: KinguinClient) -> None:
    placed = await _delivered_order(kinguin, "ret-1")
    balance = await kinguin.get_balance()

    keys = await kinguin.return_keys(placed.order_id)

    assert [k.status for k in keys] == ["RETURNED", "RETURNED"]
    assert await kinguin.get_balance() == balance + placed.total_price
    shown = await kinguin.get_order(placed.order_id)
    assert {k.status for p in shown.products for k in p.keys} == {"RETURNED"}
    with pytest.raises(KinguinResponseError) as again:
        await kinguin.return_keys(placed.order_id)
    assert (again.value.kind, again.value.status) == ("NoKeysToReturn", 400)


async def test_no_return_more_than_24_hours_after_delivery(
    kinguin: KinguinClient, sim: Any
) -> None:
    placed = await _delivered_order(kinguin, "ret-2")
    await _control(sim, f"/orders/{placed.order_id}/history", {"delivered_hours_ago": 25})
    with pytest.raises(KinguinResponseError) as refused:
        await kinguin.return_keys(placed.order_id)
    assert refused.value.kind == "NoKeysToReturn" and "24 hours" in refused.value.detail


async def test_no_return_of_a_pre_order(kinguin: KinguinClient, sim: Any) -> None:
    placed = await _delivered_order(kinguin, "ret-3")
    await _control(sim, f"/orders/{placed.order_id}/history", {"preorder": True})
    with pytest.raises(KinguinResponseError) as refused:
        await kinguin.return_keys(placed.order_id)
    assert "Pre-order" in refused.value.detail


async def test_a_claimed_key_is_refused_by_an_injected_fault(
    kinguin: KinguinClient, sim: Any
) -> None:
    placed = await _delivered_order(kinguin, "ret-4", qty=1)
    await _control(
        sim,
        "/faults/errors",
        {
            "status": 400,
            "kind": "NoKeysToReturn",
            "detail": "The key has been claimed.",
            "endpoints": ["return_keys"],
        },
    )
    with pytest.raises(KinguinResponseError) as refused:
        await kinguin.return_keys(placed.order_id)
    assert "claimed" in refused.value.detail
    shown = await kinguin.get_order(placed.order_id)
    assert [k.status for p in shown.products for k in p.keys] == ["DELIVERED"]


async def test_an_unknown_order_has_nothing_to_return(kinguin: KinguinClient) -> None:
    with pytest.raises(OrderNotFoundError):
        await kinguin.return_keys("NOSUCHORDER")
