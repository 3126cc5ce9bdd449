"""The Kinguin simulator over real HTTP, mounted under /kinguin as in production."""

from __future__ import annotations

import asyncio
import base64
import re
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs
from waiting import wait_until

from bitloot.kinguin.models import dump_json, load_json
from bitloot.sim.kinguin import DeliveryPlan, create_kinguin_sim
from bitloot.sim.kinguin_catalog import (
    CHEAP_PRODUCT_ID,
    IMAGE_PRODUCT_ID,
    IMAGES,
    MIXED_PRODUCT_ID,
    SOLD_OUT_PRODUCT_ID,
    TEXT_PRODUCT_ID,
)

API_KEY = "sim-test-api-key"
SECRET = "sim-webhook-secret"
EVENT_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")


@dataclass
class Reply:
    status: int
    body: Any
    text: str
    headers: Any


@dataclass
class Sim:
    base: str
    http: aiohttp.ClientSession

    async def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = API_KEY,
        params: dict[str, str] | None = None,
    ) -> Reply:
        headers = {"X-Api-Key": key} if key is not None else {}
        data = None
        if body is not None:
            data = body if isinstance(body, str) else dump_json(body)
            headers["Content-Type"] = "application/json"
        async with self.http.request(
            method, self.base + path, data=data, headers=headers, params=params
        ) as resp:
            text = await resp.text()
            parsed = load_json(text) if text else None
            return Reply(resp.status, parsed, text, resp.headers)

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        reply = await self.api(method, "/sim" + path, body, key=None)
        assert reply.status < 300, reply.text
        return reply.body

    async def order(self, products: list[dict[str, Any]], external_id: str | None = None) -> Reply:
        body: dict[str, Any] = {"products": products}
        if external_id is not None:
            body["orderExternalId"] = external_id
        return await self.api("POST", "/v2/order", body)


@dataclass
class Receiver:
    url: str
    calls: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    await wait_until(check, timeout, "condition", interval=0.02)


def line(product_id: str, qty: int = 1, price: str = "100", **extra: Any) -> dict[str, Any]:
    return {"productId": product_id, "qty": qty, "price": Decimal(price), **extra}


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    sub = create_kinguin_sim(
        api_key=API_KEY,
        webhook_url=None,
        webhook_secret=SECRET,
        seed=7,
        delivery=DeliveryPlan(delay=0.3),
        webhook_retry_delays=(0.05, 0.05, 0.05),
    )
    root = web.Application()
    root.add_subapp("/kinguin", sub)
    runner = web.AppRunner(root)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as http:
        yield Sim(f"http://127.0.0.1:{port}/kinguin", http)
    await runner.cleanup()


@pytest.fixture
async def receiver(sim: Sim) -> AsyncIterator[Receiver]:
    state = Receiver(url="")

    async def hook(request: web.Request) -> web.Response:
        state.calls.append((dict(request.headers), load_json(await request.read())))
        status = state.answers.pop(0) if state.answers else 204
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    await sim.control("POST", "/config", {"webhook_url": state.url})
    yield state
    await runner.cleanup()


def check_png(data: bytes) -> None:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(tag + body) & 0xFFFFFFFF == crc
        idat += body if tag == b"IDAT" else b""
        pos += 12 + length
    assert tag == b"IEND"
    width, height = struct.unpack(">II", data[16:24])
    assert len(zlib.decompress(idat)) == height * (1 + 3 * width)


def check_jpeg(data: bytes) -> None:
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    pos, markers = 2, []
    while data[pos + 1] != 0xDA:  # walk the segments up to start-of-scan
        assert data[pos] == 0xFF
        markers.append(data[pos + 1])
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        pos += 2 + length
    assert 0xC0 in markers and 0xC4 in markers and 0xDB in markers


# --- authentication and errors --------------------------------------------------------


@pytest.mark.parametrize("key", [None, "wrong"])
async def test_bad_api_key_gets_documented_401(sim: Sim, key: str | None) -> None:
    reply = await sim.api("GET", "/v1/balance", key=key)
    assert reply.status == 401
    assert reply.body["kind"] == "Authorization"
    assert reply.body["detail"] == "Invalid authentication data."
    assert reply.body["type"] == "Unauthorized" and reply.body["title"] == "Unauthorized"
    for name in ("status", "path", "method", "trace", "timestamp"):
        assert name in reply.body


async def test_control_api_needs_no_api_key(sim: Sim) -> None:
    assert await sim.control("GET", "/orders") == {"orders": []}


@pytest.mark.parametrize(
    ("products", "path"),
    [
        ([line(TEXT_PRODUCT_ID, qty=10)], "products[0].qty"),
        ([line(TEXT_PRODUCT_ID), line(TEXT_PRODUCT_ID)], "products"),
        (
            [
                line(TEXT_PRODUCT_ID, offerId="61a0000000000000000000a1"),
                line(MIXED_PRODUCT_ID, offerId="61a0000000000000000000a1"),
            ],
            "products",
        ),
        ([line(f"{i:024x}") for i in range(11)], "products"),
        ([{"productId": TEXT_PRODUCT_ID, "qty": 1, "price": "9.99"}], "products[0].price"),
        ([line(TEXT_PRODUCT_ID, keyType="image")], "products[0].keyType"),
        ([], "products"),
    ],
)
async def test_invalid_order_is_400_constraint_violation(
    sim: Sim, products: list[dict[str, Any]], path: str
) -> None:
    reply = await sim.order(products, "ext")
    assert reply.status == 400
    assert reply.body["kind"] == "ConstraintViolation"
    assert reply.body["propertyPath"] == path
    assert await sim.control("GET", "/orders") == {"orders": []}


async def test_price_below_cheapest_offer_is_product_unavailable(sim: Sim) -> None:
    reply = await sim.order([line(TEXT_PRODUCT_ID, price="9.48")])
    assert (reply.status, reply.body["kind"]) == (422, "ProductUnavailable")
    assert (await sim.order([line(TEXT_PRODUCT_ID, price="9.49")])).status == 201


async def test_stock_zero_and_back(sim: Sim) -> None:
    await sim.control("POST", f"/products/{TEXT_PRODUCT_ID}/stock", {"qty": 0})
    reply = await sim.order([line(TEXT_PRODUCT_ID)])
    assert (reply.status, reply.body["kind"]) == (422, "ProductUnavailable")
    assert (await sim.api("GET", f"/v2/products/{TEXT_PRODUCT_ID}")).status == 404
    await sim.control("POST", f"/products/{TEXT_PRODUCT_ID}/stock", {"qty": None})
    assert (await sim.order([line(TEXT_PRODUCT_ID)])).status == 201


async def test_short_balance_is_insufficient_balance_and_charges_nothing(sim: Sim) -> None:
    await sim.control("POST", "/balance", {"balance": Decimal("10.00")})
    reply = await sim.order([line(TEXT_PRODUCT_ID, qty=2)])
    assert (reply.status, reply.body["kind"]) == (422, "InsufficientBalance")
    balance = await sim.api("GET", "/v1/balance")
    assert balance.body == {"balance": Decimal("10.00")}


async def test_unknown_order_is_404_order_not_found(sim: Sim) -> None:
    for path in ("/v1/order/NOPE", "/v2/order/NOPE/keys"):
        reply = await sim.api("GET", path)
        assert (reply.status, reply.body["kind"]) == (404, "OrderNotFound")


# --- orders, products, balance --------------------------------------------------------


async def test_place_order_is_201_processing_with_numeric_prices(sim: Sim) -> None:
    reply = await sim.order([line(TEXT_PRODUCT_ID, qty=2, price="10")], "ext-1")
    assert reply.status == 201
    order = reply.body
    assert order["status"] == "processing" and order["orderExternalId"] == "ext-1"
    assert order["totalPrice"] == Decimal("18.98") and order["totalQty"] == 2
    assert '"totalPrice":18.98' in reply.text and '"requestTotalPrice":20' in reply.text
    assert [k["status"] for k in order["products"][0]["keys"]] == ["PENDING", "PENDING"]
    balance = await sim.api("GET", "/v1/balance")
    assert balance.body["balance"] == Decimal("1000.00") - Decimal("18.98")


async def test_product_lookup_by_both_ids(sim: Sim) -> None:
    v2 = await sim.api("GET", f"/v2/products/{TEXT_PRODUCT_ID}")
    v1 = await sim.api("GET", f"/v1/products/{v2.body['kinguinId']}")
    assert v1.body["productId"] == TEXT_PRODUCT_ID
    assert v2.body["price"] == Decimal("9.49") and v2.body["offers"][0]["wholesale"]
    sold_out = await sim.api("GET", f"/v2/products/{SOLD_OUT_PRODUCT_ID}")
    assert (sold_out.status, sold_out.body["kind"]) == (404, "ProductUnavailable")


async def test_seeded_products_say_different_things_about_their_keys(sim: Sim) -> None:
    facts = ("platform", "regionalLimitations", "countryLimitation", "isPreorder", "releaseDate")
    seen = {}
    for product_id in (TEXT_PRODUCT_ID, MIXED_PRODUCT_ID, IMAGE_PRODUCT_ID, CHEAP_PRODUCT_ID):
        body = (await sim.api("GET", f"/v2/products/{product_id}")).body
        seen[product_id] = (*(body[name] for name in facts), body["images"])
    assert seen[TEXT_PRODUCT_ID][:5] == ("Steam", "REGION FREE", [], False, "2016-02-26")
    assert seen[TEXT_PRODUCT_ID][5]["cover"]["url"] == f"{IMAGES}/stardew-valley.jpg"
    assert seen[MIXED_PRODUCT_ID][:5] == (
        "GOG COM",
        "EUROPE",
        ["CH", "GB", "NO"],
        False,
        "2020-12-10",
    )
    assert seen[IMAGE_PRODUCT_ID] == (
        "Other",
        "REGION FREE",
        [],
        False,
        None,
        {"cover": None, "screenshots": []},
    )
    assert seen[CHEAP_PRODUCT_ID][5] == {"cover": {"thumbnail": f"{IMAGES}/indie-bundle_thumb.jpg"}}


async def test_control_api_makes_a_region_locked_pre_order(sim: Sim) -> None:
    new = {
        "product_id": "5f00000000000000000000ab",
        "name": "Upcoming Game Epic Key",
        "platform": "Epic Games",
        "regional_limitations": "EUROPE",
        "country_limitation": ["GB", "CH"],
        "is_preorder": True,
        "release_date": "2027-03-01",
        "image_url": "https://cdn.example/upcoming.jpg",
        "offers": [{"price": "49.99", "qty": 20}],
    }
    await sim.control("POST", "/products", new)
    body = (await sim.api("GET", "/v2/products/5f00000000000000000000ab")).body
    assert (body["platform"], body["regionalLimitations"], body["countryLimitation"]) == (
        "Epic Games",
        "EUROPE",
        ["GB", "CH"],
    )
    assert (body["isPreorder"], body["releaseDate"]) == (True, "2027-03-01")
    assert body["offers"][0]["isPreorder"] is True
    assert body["images"]["cover"]["url"] == "https://cdn.example/upcoming.jpg"

    # Changing some facts keeps the others; malformed ones are sent as given.
    changed = {"notify": False, "is_preorder": False, "country_limitation": ["gb", "XYZ"]}
    await sim.control("POST", "/products/5f00000000000000000000ab", changed)
    body = (await sim.api("GET", "/v2/products/5f00000000000000000000ab")).body
    assert (body["isPreorder"], body["countryLimitation"]) == (False, ["gb", "XYZ"])
    assert (body["platform"], body["releaseDate"]) == ("Epic Games", "2027-03-01")

    await sim.control("POST", f"/products/{TEXT_PRODUCT_ID}", {"notify": False, "platform": None})
    await sim.control("POST", "/reset")
    body = (await sim.api("GET", f"/v2/products/{TEXT_PRODUCT_ID}")).body
    assert body["platform"] == "Steam"  # the seed again


async def test_search_by_external_id_and_paging_limits(sim: Sim) -> None:
    await sim.order([line(TEXT_PRODUCT_ID)], "a")
    await sim.order([line(TEXT_PRODUCT_ID)], "b")
    found = await sim.api("GET", "/v1/order", params={"orderExternalId": "b"})
    assert found.body["item_count"] == 1
    assert found.body["results"][0]["orderExternalId"] == "b"
    everything = await sim.api("GET", "/v1/order", params={"limit": "1"})
    assert everything.body["item_count"] == 2 and len(everything.body["results"]) == 1
    too_big = await sim.api("GET", "/v1/order", params={"limit": "101"})
    assert (too_big.status, too_big.body["kind"]) == (400, "ConstraintViolation")


@pytest.mark.parametrize(
    ("mode", "status", "kind"),
    [("constraint_violation", 400, "ConstraintViolation"), ("order_failed", 422, "OrderFailed")],
)
async def test_reused_external_id_is_refused(sim: Sim, mode: str, status: int, kind: str) -> None:
    await sim.control("POST", "/config", {"duplicate_external_id": mode})
    assert (await sim.order([line(TEXT_PRODUCT_ID)], "same")).status == 201
    again = await sim.order([line(TEXT_PRODUCT_ID)], "same")
    assert (again.status, again.body["kind"]) == (status, kind)
    assert len((await sim.control("GET", "/orders"))["orders"]) == 1


async def test_reused_external_id_can_return_the_existing_order(sim: Sim) -> None:
    await sim.control("POST", "/config", {"duplicate_external_id": "return_existing"})
    first = await sim.order([line(TEXT_PRODUCT_ID)], "same")
    again = await sim.order([line(TEXT_PRODUCT_ID)], "same")
    assert again.body["orderId"] == first.body["orderId"]
    assert len((await sim.control("GET", "/orders"))["orders"]) == 1


# --- key delivery ---------------------------------------------------------------------


async def test_keys_appear_gradually_then_order_completes(sim: Sim) -> None:
    await sim.control("POST", "/delivery", {"delay": 0.6, "gradual": True})
    order = (await sim.order([line(TEXT_PRODUCT_ID, qty=3)])).body
    keys_path = f"/v2/order/{order['orderId']}/keys"
    assert (await sim.api("GET", keys_path)).body == []
    seen: list[int] = []

    async def all_delivered() -> bool:
        seen.append(len((await sim.api("GET", keys_path)).body))
        return seen[-1] == 3

    await eventually(all_delivered)
    assert any(0 < n < 3 for n in seen), seen
    order_path = f"/v1/order/{order['orderId']}"

    async def completed() -> bool:
        return bool((await sim.api("GET", order_path)).body["status"] == "completed")

    await eventually(completed)
    final = (await sim.api("GET", order_path)).body
    assert final["status"] == "completed"
    assert {k["status"] for k in final["products"][0]["keys"]} == {"DELIVERED"}


async def test_instant_keys_and_keys_released_per_poll(sim: Sim) -> None:
    await sim.control("POST", "/delivery", {"delay": 60, "instant_keys": 1, "keys_per_poll": 2})
    order = (await sim.order([line(TEXT_PRODUCT_ID, qty=6)])).body
    delivered = [k["status"] for k in order["products"][0]["keys"]]
    assert delivered.count("DELIVERED") == 1 and delivered.count("PROCESSING") == 5
    keys_path = f"/v2/order/{order['orderId']}/keys"
    counts = [len((await sim.api("GET", keys_path)).body) for _ in range(3)]
    assert counts == [3, 5, 6]


async def test_keys_are_paginated_bare_arrays(sim: Sim) -> None:
    await sim.control("POST", "/delivery", {"delay": 0})
    order = (await sim.order([line(TEXT_PRODUCT_ID, qty=5)])).body
    path = f"/v2/order/{order['orderId']}/keys"
    pages = [
        (await sim.api("GET", path, params={"page": str(p), "limit": "2"})).body
        for p in (1, 2, 3, 4)
    ]
    assert [len(p) for p in pages] == [2, 2, 1, 0]
    ids = [k["id"] for page in pages for k in page]
    assert len(set(ids)) == 5
    assert set(pages[0][0]) == {"id", "serial", "type", "name", "kinguinId", "offerId", "productId"}
    assert (await sim.api("GET", path, params={"limit": "101"})).status == 400


async def test_text_key_type_gives_only_text_keys(sim: Sim) -> None:
    await sim.control("POST", "/delivery", {"delay": 0})
    order = (await sim.order([line(MIXED_PRODUCT_ID, qty=9, keyType="text")])).body
    keys = (await sim.api("GET", f"/v2/order/{order['orderId']}/keys")).body
    assert {k["type"] for k in keys} == {"text/plain"}
    assert all(re.fullmatch(r"[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5}", k["serial"]) for k in keys)


async def test_image_keys_are_real_distinct_images(sim: Sim) -> None:
    await sim.control("POST", "/delivery", {"delay": 0})
    order = (await sim.order([line(IMAGE_PRODUCT_ID, qty=9)])).body
    keys = (await sim.api("GET", f"/v2/order/{order['orderId']}/keys")).body
    assert {k["type"] for k in keys} == {"image/png", "image/jpeg"}
    for key in keys:
        data = base64.b64decode(key["serial"], validate=True)
        (check_png if key["type"] == "image/png" else check_jpeg)(data)
    assert len({k["serial"] for k in keys}) == 9


async def test_complete_now_delivers_everything(sim: Sim) -> None:
    await sim.control("POST", "/delivery", {"delay": 3600})
    order = (await sim.order([line(TEXT_PRODUCT_ID, qty=4)])).body
    done = await sim.control("POST", f"/orders/{order['orderId']}/complete")
    assert done["status"] == "completed"
    keys = (await sim.api("GET", f"/v2/order/{order['orderId']}/keys")).body
    assert len(keys) == 4


async def test_sim_orders_expose_serials_only_on_request(sim: Sim) -> None:
    await sim.control("POST", "/delivery", {"delay": 0})
    order = (await sim.order([line(TEXT_PRODUCT_ID, qty=2)])).body
    keys = (await sim.api("GET", f"/v2/order/{order['orderId']}/keys")).body
    plain = (await sim.control("GET", "/orders"))["orders"][0]
    assert "serial" not in plain["products"][0]["keys"][0]
    full = await sim.api("GET", "/sim/orders", key=None, params={"include_keys": "1"})
    sim_keys = full.body["orders"][0]["products"][0]["keys"]
    assert {k["id"]: k["serial"] for k in sim_keys} == {k["id"]: k["serial"] for k in keys}


@pytest.mark.parametrize("fate", ["canceled", "refunded"])
async def test_next_order_can_end_canceled_or_refunded(
    sim: Sim, receiver: Receiver, fate: str
) -> None:
    await sim.control("POST", "/faults/outcomes", {"outcomes": [fate]})
    order = (await sim.order([line(TEXT_PRODUCT_ID, qty=2)], "doomed")).body
    await eventually(lambda: _has_calls(receiver, 1))
    assert receiver.calls[0][1]["status"] == fate
    final = (await sim.api("GET", f"/v1/order/{order['orderId']}")).body
    assert final["status"] == fate
    assert (await sim.api("GET", f"/v2/order/{order['orderId']}/keys")).body == []
    assert (await sim.api("GET", "/v1/balance")).body["balance"] == Decimal("1000.00")
    follow_up = (await sim.order([line(TEXT_PRODUCT_ID)], "fine")).body
    await eventually(lambda: _has_calls(receiver, 2))
    later = receiver.calls[1][1]
    assert (later["orderId"], later["status"]) == (follow_up["orderId"], "completed")


# --- injected HTTP faults -------------------------------------------------------------


async def test_429_burst_with_retry_after(sim: Sim) -> None:
    await sim.control("POST", "/faults/errors", {"status": 429, "count": 2, "retry_after": 1.5})
    statuses = []
    for _ in range(3):
        reply = await sim.api("GET", "/v1/balance")
        statuses.append(reply.status)
        if reply.status == 429:
            assert reply.headers["Retry-After"] == "1.5"
    assert statuses == [429, 429, 200]


async def test_5xx_body_has_type_but_no_title(sim: Sim) -> None:
    await sim.control("POST", "/faults/errors", {"status": 500, "count": 1})
    reply = await sim.api("GET", "/v1/balance")
    assert reply.status == 500
    assert reply.body["type"] == "Internal Server Error" and "title" not in reply.body
    assert reply.body["kind"] == "Error"


async def test_error_after_processing_places_the_order_anyway(sim: Sim) -> None:
    await sim.control(
        "POST",
        "/faults/errors",
        {"status": 502, "count": 1, "endpoints": ["place_order"], "when": "after"},
    )
    assert (await sim.api("GET", "/v1/balance")).status == 200  # not a matching endpoint
    reply = await sim.order([line(TEXT_PRODUCT_ID)], "lost-answer")
    assert reply.status == 502
    orders = (await sim.control("GET", "/orders"))["orders"]
    assert [o["orderExternalId"] for o in orders] == ["lost-answer"]


async def test_injected_kind_and_latency(sim: Sim) -> None:
    await sim.control("POST", "/faults/errors", {"status": 422, "kind": "OrderFailed"})
    reply = await sim.order([line(TEXT_PRODUCT_ID)])
    assert (reply.status, reply.body["kind"], reply.body["title"]) == (
        422,
        "OrderFailed",
        "Unprocessable Content",
    )
    await sim.control("POST", "/faults/latency", {"seconds": 0.3, "count": 1})
    started = asyncio.get_running_loop().time()
    assert (await sim.api("GET", "/v1/balance")).status == 200
    assert asyncio.get_running_loop().time() - started >= 0.3
    assert (await sim.control("GET", "/faults"))["http"] == []


# --- webhooks -------------------------------------------------------------------------


def _has_calls(receiver: Receiver, n: int) -> Awaitable[bool]:
    async def check() -> bool:
        return len(receiver.calls) >= n

    return check()


# How a webhook's delivery ends in the simulator's log (anything else is still under way).
FINAL_OUTCOMES = {"delivered", "gave_up", "dropped", "no_url"}


async def _settled(sim: Sim, external_ids: set[str]) -> bool:
    """Whether the simulator's log shows the final outcome of these orders' webhooks."""
    deliveries = (await sim.control("GET", "/webhooks"))["deliveries"]
    final = {d["orderExternalId"] for d in deliveries if d["outcome"] in FINAL_OUTCOMES}
    return external_ids <= final


async def test_completion_webhook_has_headers_and_body(sim: Sim, receiver: Receiver) -> None:
    order = (await sim.order([line(TEXT_PRODUCT_ID, qty=2)], "hooked")).body
    await eventually(lambda: _has_calls(receiver, 1))
    headers, body = receiver.calls[0]
    assert headers["X-Event-Name"] == "order.status"
    assert headers["X-Event-Secret"] == SECRET
    assert headers["Content-Type"] == "application/json"
    assert set(body) == {"orderId", "orderExternalId", "status", "updatedAt"}
    assert (body["orderId"], body["orderExternalId"], body["status"]) == (
        order["orderId"],
        "hooked",
        "completed",
    )
    assert EVENT_TIME.match(body["updatedAt"])


async def test_webhook_retried_until_2xx(sim: Sim, receiver: Receiver) -> None:
    receiver.answers = [500, 503]
    await sim.order([line(TEXT_PRODUCT_ID)], "retry")
    await eventually(lambda: _has_calls(receiver, 3))
    deliveries = (await sim.control("GET", "/webhooks"))["deliveries"]
    assert [d["outcome"] for d in deliveries] == ["retrying", "retrying", "delivered"]
    assert [d["httpStatus"] for d in deliveries] == [500, 503, 204]


async def test_webhook_dropped_under_fault(sim: Sim, receiver: Receiver) -> None:
    await sim.control("POST", "/faults/webhooks", {"drop": 1})
    await sim.order([line(TEXT_PRODUCT_ID)], "dropped")
    await sim.order([line(TEXT_PRODUCT_ID)], "kept")
    # Not "wait and see that nothing comes": the simulator has settled both webhooks.
    await eventually(lambda: _settled(sim, {"dropped", "kept"}))
    assert [c[1]["orderExternalId"] for c in receiver.calls] == ["kept"]
    outcomes = [d["outcome"] for d in (await sim.control("GET", "/webhooks"))["deliveries"]]
    assert outcomes.count("dropped") == 1


async def test_webhook_duplicated_under_fault(sim: Sim, receiver: Receiver) -> None:
    await sim.control("POST", "/faults/webhooks", {"duplicate": 1})
    await sim.order([line(TEXT_PRODUCT_ID)], "twice")
    await eventually(lambda: _has_calls(receiver, 2))
    assert receiver.calls[0][1] == receiver.calls[1][1]


async def test_webhooks_reordered_under_fault(sim: Sim, receiver: Receiver) -> None:
    await sim.control("POST", "/config", {"notify_processing": True})
    await sim.control("POST", "/faults/webhooks", {"reorder": 2})
    await sim.order([line(TEXT_PRODUCT_ID)], "late")
    await eventually(lambda: _has_calls(receiver, 2))
    first, second = (c[1] for c in receiver.calls)
    assert (first["status"], second["status"]) == ("completed", "processing")
    assert second["updatedAt"] <= first["updatedAt"]


# --- determinism, reset, logging ------------------------------------------------------


async def test_reset_restores_the_seeded_start(sim: Sim) -> None:
    first = (await sim.order([line(CHEAP_PRODUCT_ID, qty=3)])).body
    await sim.control("POST", "/balance", {"balance": 1})
    await sim.control("POST", "/reset")
    assert await sim.control("GET", "/orders") == {"orders": []}
    assert (await sim.api("GET", "/v1/balance")).body["balance"] == Decimal("1000.00")
    again = (await sim.order([line(CHEAP_PRODUCT_ID, qty=3)])).body
    assert again["orderId"] == first["orderId"]  # same seed, same ids
    assert [k["id"] for k in again["products"][0]["keys"]] == [
        k["id"] for k in first["products"][0]["keys"]
    ]


async def test_sim_never_logs_serials(sim: Sim, receiver: Receiver) -> None:
    await sim.control("POST", "/delivery", {"delay": 0})
    with capture_logs() as logs:
        order = (await sim.order([line(MIXED_PRODUCT_ID, qty=5)], "quiet")).body
        keys = (await sim.api("GET", f"/v2/order/{order['orderId']}/keys")).body
        await eventually(lambda: _has_calls(receiver, 1))
    assert logs, "expected some log events"
    text = repr(logs)
    assert keys and not any(k["serial"] in text for k in keys)
