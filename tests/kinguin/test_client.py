"""KinguinClient against the simulator over real HTTP (mounted under /kinguin)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import ValidationError
from structlog.testing import capture_logs
from waiting import wait_until

from bitloot.fulfillment.purchase import recover_placed
from bitloot.kinguin.client import KinguinClient
from bitloot.kinguin.errors import (
    AuthorizationError,
    ConstraintViolationError,
    InsufficientBalanceError,
    KinguinConnectionError,
    KinguinError,
    KinguinResponseError,
    KinguinServerError,
    KinguinTimeoutError,
    OrderFailedError,
    OrderNotFoundError,
    ProductUnavailableError,
    RateLimitedError,
    classify_error,
)
from bitloot.kinguin.models import (
    ErrorBody,
    Key,
    Order,
    OrderProductRequest,
    OrderStatusEvent,
    dump_json,
    format_event_time,
    load_json,
)
from bitloot.processes import free_port
from bitloot.sim.kinguin import DeliveryPlan, create_kinguin_sim
from bitloot.sim.kinguin_catalog import (
    CHEAP_PRODUCT_ID,
    IMAGE_PRODUCT_ID,
    IMAGES,
    MIXED_PRODUCT_ID,
    SOLD_OUT_PRODUCT_ID,
    TEXT_PRODUCT_ID,
)

API_KEY = "client-test-api-key-0123456789"


@dataclass
class Harness:
    base_url: str
    http: aiohttp.ClientSession
    sleeps: list[float] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    # Route names of the requests the simulator has finished handling (whether or not the
    # client was still there to read the answer).
    handled: list[str] = field(default_factory=list)

    def client(self, **options: Any) -> KinguinClient:
        async def recording_sleep(seconds: float) -> None:
            self.sleeps.append(seconds)
            await asyncio.sleep(min(seconds, 0.01))

        settings: dict[str, Any] = {
            "timeout": 2.0,
            "backoff_base": 0.01,
            "backoff_max": 0.05,
            "sleep": recording_sleep,
            "on_call": lambda endpoint, seconds, outcome: self.calls.append((endpoint, outcome)),
        }
        settings |= options
        return KinguinClient(self.base_url, settings.pop("api_key", API_KEY), **settings)

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else dump_json(body)
        async with self.http.request(method, f"{self.base_url}/sim{path}", data=data) as resp:
            assert resp.status < 300, await resp.text()
            return load_json(await resp.read())

    async def sim_orders(self) -> list[dict[str, Any]]:
        orders: list[dict[str, Any]] = (await self.control("GET", "/orders?include_keys=1"))[
            "orders"
        ]
        return orders


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    sub = create_kinguin_sim(
        api_key=API_KEY,
        webhook_url=None,
        webhook_secret="unused",
        seed=11,
        delivery=DeliveryPlan(delay=0.2),
    )
    handled: list[str] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)  # type: ignore[no-any-return]
        finally:
            handled.append(request.match_info.route.name or "unknown")

    root = web.Application(middlewares=[record])
    root.add_subapp("/kinguin", sub)
    runner = web.AppRunner(root)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    async with aiohttp.ClientSession() as http:
        yield Harness(f"http://127.0.0.1:{runner.addresses[0][1]}/kinguin", http, handled=handled)
    await runner.cleanup()


def buy(product_id: str = TEXT_PRODUCT_ID, qty: int = 1, price: str = "50") -> OrderProductRequest:
    return OrderProductRequest(product_id=product_id, qty=qty, price=Decimal(price))


async def place(
    kinguin: KinguinClient, products: list[OrderProductRequest], external_id: str
) -> Order:
    """`place_order` with the product's recovery rule (bitloot.fulfillment.purchase)."""
    return await kinguin.place_order(
        products, external_id, recover=recover_placed(kinguin, external_id)
    )


# --- happy paths ----------------------------------------------------------------------


async def test_get_balance_is_exact_decimal(harness: Harness) -> None:
    await harness.control("POST", "/balance", {"balance": Decimal("1234.57")})
    async with harness.client() as kinguin:
        assert await kinguin.get_balance() == Decimal("1234.57")


async def test_get_product_parses_offers(harness: Harness) -> None:
    async with harness.client() as kinguin:
        product = await kinguin.get_product(TEXT_PRODUCT_ID)
    assert product.product_id == TEXT_PRODUCT_ID and product.price == Decimal("9.49")
    assert product.cheapest_offer_id == [product.offers[0].offer_id]
    assert product.offers[0].wholesale is not None


async def test_get_product_parses_what_the_customer_is_told_about_the_key(
    harness: Harness,
) -> None:
    await harness.control(
        "POST",
        "/products",
        {
            "product_id": "5f00000000000000000000aa",
            "name": "Upcoming Game Steam CD Key",
            "offers": [{"price": "39.99", "qty": 10}],
            "regional_limitations": "EUROPE",
            "country_limitation": ["gb", "CH", "Nowhere"],
            "image_url": "https://cdn.example/upcoming.jpg",
            "is_preorder": True,
            "release_date": "2027-03-01",
        },
    )
    async with harness.client() as kinguin:
        mixed = await kinguin.get_product(MIXED_PRODUCT_ID)
        upcoming = await kinguin.get_product("5f00000000000000000000aa")
        bundle = await kinguin.get_product(CHEAP_PRODUCT_ID)
    assert (mixed.platform, mixed.regional_limitations) == ("GOG COM", "EUROPE")
    assert mixed.country_limitation == ["CH", "GB", "NO"]
    assert mixed.cover_url == f"{IMAGES}/cyberpunk-2077.jpg"
    assert (mixed.is_preorder, mixed.release_date) == (False, "2020-12-10")
    assert (upcoming.platform, upcoming.country_limitation) == ("Steam", ["GB", "CH"])
    assert (upcoming.is_preorder, upcoming.release_date) == (True, "2027-03-01")
    assert upcoming.cover_url == "https://cdn.example/upcoming.jpg"
    assert bundle.cover_url == f"{IMAGES}/indie-bundle_thumb.jpg"  # only a thumbnail


async def test_place_get_and_find_order(harness: Harness) -> None:
    async with harness.client() as kinguin:
        placed = await place(kinguin, [buy(qty=2, price="9.49")], "bitloot-1")
        assert placed.status == "processing" and placed.order_external_id == "bitloot-1"
        assert placed.total_price == Decimal("18.98")
        assert placed.created_at.utcoffset() == timedelta(0)

        async def completed() -> bool:
            return (await kinguin.get_order(placed.order_id)).status == "completed"

        await wait_until(completed, 10, "the simulator completes the order")
        fetched = await kinguin.get_order(placed.order_id)
        found = await kinguin.find_order_by_external_id("bitloot-1")
        missing = await kinguin.find_order_by_external_id("bitloot-404")
    assert fetched.status == "completed" and fetched.key_count == 2
    assert {k.status for k in fetched.products[0].keys} == {"DELIVERED"}
    assert found is not None and found.order_id == placed.order_id
    assert missing is None


async def test_get_keys_pages_past_one_page(harness: Harness) -> None:
    products = [buy(TEXT_PRODUCT_ID, 9), buy(MIXED_PRODUCT_ID, 9), buy(IMAGE_PRODUCT_ID, 9)]
    async with harness.client() as kinguin:
        order = await place(kinguin, products, "many-keys")
        await harness.control("POST", f"/orders/{order.order_id}/complete")
        keys = await kinguin.get_keys(order.order_id, page_size=10)
    assert len(keys) == 27 and len({k.id for k in keys}) == 27
    assert [o for e, o in harness.calls if e == "get_keys"] == ["ok"] * 3
    sim_keys = {
        k["id"]: k["serial"] for p in (await harness.sim_orders())[0]["products"] for k in p["keys"]
    }
    assert {k.id: k.serial.get_secret_value() for k in keys} == sim_keys


async def test_get_keys_returns_what_is_delivered_so_far(harness: Harness) -> None:
    await harness.control("POST", "/delivery", {"delay": 60, "instant_keys": 2})
    async with harness.client() as kinguin:
        order = await place(kinguin, [buy(qty=5)], "partial")
        assert len(await kinguin.get_keys(order.order_id)) == 2


async def test_image_keys_decode_to_real_images(harness: Harness) -> None:
    async with harness.client() as kinguin:
        order = await place(kinguin, [buy(IMAGE_PRODUCT_ID, 6)], "images")
        await harness.control("POST", f"/orders/{order.order_id}/complete")
        keys = await kinguin.get_keys(order.order_id)
    assert {k.type for k in keys} <= {"image/png", "image/jpeg"}
    for key in keys:
        data = key.plaintext()
        if key.type == "image/png":
            assert data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")
        else:
            assert data.startswith(b"\xff\xd8") and data.endswith(b"\xff\xd9")


async def test_text_key_plaintext_is_utf8(harness: Harness) -> None:
    request = OrderProductRequest(
        product_id=MIXED_PRODUCT_ID, qty=3, price=Decimal("20"), key_type="text"
    )
    async with harness.client() as kinguin:
        order = await place(kinguin, [request], "texts")
        await harness.control("POST", f"/orders/{order.order_id}/complete")
        keys = await kinguin.get_keys(order.order_id)
    assert {k.type for k in keys} == {"text/plain"}
    assert all(k.plaintext() == k.serial.get_secret_value().encode() for k in keys)


# --- errors ---------------------------------------------------------------------------


async def test_bad_api_key_is_authorization_error_without_the_key(harness: Harness) -> None:
    async with harness.client(api_key="wrong-secret-key") as kinguin:
        with pytest.raises(AuthorizationError) as caught:
            await kinguin.get_balance()
    assert caught.value.status == 401 and not caught.value.retryable
    assert "wrong-secret-key" not in str(caught.value) + repr(caught.value)
    assert harness.calls == [("get_balance", "rejected")]


async def test_server_side_constraint_violation(harness: Harness) -> None:
    # Bypass our own validation to reach Kinguin's 400.
    too_many = OrderProductRequest.model_construct(
        product_id=TEXT_PRODUCT_ID, qty=10, price=Decimal("50"), key_type=None, offer_id=None
    )
    async with harness.client() as kinguin:
        with pytest.raises(ConstraintViolationError) as caught:
            await place(kinguin, [too_many], "bad")
    assert (caught.value.status, caught.value.property_path) == (400, "products[0].qty")
    assert [e for e, _ in harness.calls] == ["place_order", "find_order"]


async def test_client_side_validation_is_constraint_violation(harness: Harness) -> None:
    async with harness.client() as kinguin:
        with pytest.raises(ConstraintViolationError):
            await place(kinguin, [buy(), buy()], "dup-products")
    assert harness.calls == []


async def test_product_unavailable_and_insufficient_balance(harness: Harness) -> None:
    async with harness.client() as kinguin:
        with pytest.raises(ProductUnavailableError) as below:
            await place(kinguin, [buy(price="1.00")], "too-cheap")
        with pytest.raises(ProductUnavailableError) as sold_out:
            await kinguin.get_product(SOLD_OUT_PRODUCT_ID)
        await harness.control("POST", "/balance", {"balance": 5})
        with pytest.raises(InsufficientBalanceError) as broke:
            await place(kinguin, [buy()], "broke")
    assert (below.value.status, sold_out.value.status, broke.value.status) == (422, 404, 422)
    assert await harness.sim_orders() == []


async def test_order_failed_and_order_not_found(harness: Harness) -> None:
    await harness.control(
        "POST",
        "/faults/errors",
        {"status": 422, "kind": "OrderFailed", "endpoints": ["place_order"]},
    )
    async with harness.client() as kinguin:
        with pytest.raises(OrderFailedError):
            await place(kinguin, [buy()], "fails")
        with pytest.raises(OrderNotFoundError):
            await kinguin.get_order("NOSUCHORDER")
        with pytest.raises(OrderNotFoundError):
            await kinguin.get_keys("NOSUCHORDER")


async def test_500_with_type_only_is_retryable_server_error(harness: Harness) -> None:
    await harness.control("POST", "/faults/errors", {"status": 500, "count": None})
    async with harness.client(max_attempts=3) as kinguin:
        with pytest.raises(KinguinServerError) as caught:
            await kinguin.get_balance()
    assert caught.value.retryable and caught.value.kind == "Error"
    assert caught.value.detail == "Unexpected error."
    assert [o for _, o in harness.calls] == ["server_error"] * 3
    assert len(harness.sleeps) == 2


# --- retries --------------------------------------------------------------------------


async def test_429_burst_is_retried_then_succeeds(harness: Harness) -> None:
    await harness.control("POST", "/faults/errors", {"status": 429, "count": 3})
    async with harness.client() as kinguin:
        assert await kinguin.get_balance() == Decimal("1000.00")
    assert [o for _, o in harness.calls] == ["rate_limited"] * 3 + ["ok"]
    # Full jitter: each wait is within [0, min(backoff_max, base * 2**(n-1))].
    for attempt, delay in enumerate(harness.sleeps, start=1):
        assert 0 <= delay <= min(0.05, 0.01 * 2 ** (attempt - 1))


async def test_5xx_burst_is_retried_then_succeeds(harness: Harness) -> None:
    await harness.control("POST", "/faults/errors", {"status": 503, "count": 2})
    async with harness.client() as kinguin:
        product = await kinguin.get_product(TEXT_PRODUCT_ID)
    assert product.product_id == TEXT_PRODUCT_ID
    assert [o for _, o in harness.calls] == ["server_error", "server_error", "ok"]


async def test_retry_after_is_honoured_and_capped(harness: Harness) -> None:
    await harness.control(
        "POST", "/faults/errors", {"status": 429, "count": 1, "retry_after": 0.15}
    )
    await harness.control("POST", "/faults/errors", {"status": 429, "count": 1, "retry_after": 30})
    async with harness.client() as kinguin:
        await kinguin.get_balance()
    # The rules fire together on the first call; the first one's header wins.
    await harness.control("POST", "/faults/errors", {"status": 503, "count": 1, "retry_after": 30})
    async with harness.client() as kinguin:
        await kinguin.get_balance()
    assert harness.sleeps == [0.15, 0.05 * 4]


async def test_retry_after_really_waits(harness: Harness) -> None:
    await harness.control("POST", "/faults/errors", {"status": 429, "count": 1, "retry_after": 0.3})
    async with KinguinClient(harness.base_url, API_KEY, backoff_max=1) as kinguin:
        started = asyncio.get_running_loop().time()
        await kinguin.get_balance()
    assert asyncio.get_running_loop().time() - started >= 0.3


async def test_timeout_gives_retryable_error_after_max_attempts(harness: Harness) -> None:
    await harness.control("POST", "/faults/latency", {"seconds": 1, "count": None})
    async with harness.client(timeout=0.2, max_attempts=2) as kinguin:
        with pytest.raises(KinguinTimeoutError) as caught:
            await kinguin.get_balance()
    assert caught.value.retryable
    assert harness.calls == [("get_balance", "timeout")] * 2


async def test_permanent_error_is_not_retried(harness: Harness) -> None:
    async with harness.client() as kinguin:
        with pytest.raises(ProductUnavailableError):
            await kinguin.get_product("000000000000000000000000")
    assert harness.calls == [("get_product", "rejected")] and harness.sleeps == []


async def test_refused_connection_is_retryable_and_not_ambiguous() -> None:
    port = free_port()
    calls: list[str] = []
    async with KinguinClient(
        f"http://127.0.0.1:{port}",
        API_KEY,
        max_attempts=2,
        backoff_base=0.001,
        on_call=lambda endpoint, seconds, outcome: calls.append(endpoint),
    ) as kinguin:
        with pytest.raises(KinguinConnectionError) as caught:
            await place(kinguin, [buy()], "nowhere")
    assert caught.value.retryable and not caught.value.request_sent
    assert calls == ["place_order", "place_order"]  # no search: it was never sent
    assert API_KEY not in str(caught.value)


async def test_on_call_hook_failure_does_not_break_calls(harness: Harness) -> None:
    def broken(endpoint: str, seconds: float, outcome: str) -> None:
        raise RuntimeError("metrics down")

    async with harness.client(on_call=broken) as kinguin:
        assert await kinguin.get_balance() == Decimal("1000.00")


# --- never buying twice ---------------------------------------------------------------


async def test_lost_5xx_answer_recovers_the_placed_order(harness: Harness) -> None:
    await harness.control(
        "POST",
        "/faults/errors",
        {"status": 500, "count": 1, "endpoints": ["place_order"], "when": "after"},
    )
    async with harness.client() as kinguin:
        order = await place(kinguin, [buy()], "lost-500")
    orders = await harness.sim_orders()
    assert [o["orderId"] for o in orders] == [order.order_id]
    assert [e for e, _ in harness.calls] == ["place_order", "find_order"]


async def test_timeout_after_placement_recovers_without_buying_twice(harness: Harness) -> None:
    await harness.control(
        "POST",
        "/faults/latency",
        {"seconds": 0.6, "count": 1, "endpoints": ["place_order"], "when": "after"},
    )
    async with harness.client(timeout=0.3) as kinguin:
        order = await place(kinguin, [buy()], "slow-answer")
    assert order.order_external_id == "slow-answer"
    assert len(await harness.sim_orders()) == 1


async def test_timeout_before_placement_never_buys_twice(harness: Harness) -> None:
    # The first POST is still sleeping in the server when the client gives up, searches
    # (nothing yet) and sends again; whichever lands second is refused as a duplicate.
    await harness.control(
        "POST", "/faults/latency", {"seconds": 0.5, "count": 1, "endpoints": ["place_order"]}
    )
    async with harness.client(timeout=0.2) as kinguin:
        order = await place(kinguin, [buy()], "slow-request")
    sent = [e for e, _ in harness.calls].count("place_order")
    assert sent >= 2  # the slow POST was abandoned and sent again
    # Not "wait and see": the simulator has finished every POST the client sent, the
    # abandoned slow one included, so any second purchase would be recorded by now.
    await wait_until(
        lambda: harness.handled.count("place_order") >= sent, 10, "the simulator handles each POST"
    )
    orders = await harness.sim_orders()
    assert [o["orderId"] for o in orders] == [order.order_id]


@pytest.mark.parametrize("mode", ["constraint_violation", "order_failed", "return_existing"])
async def test_reused_external_id_returns_the_existing_order(harness: Harness, mode: str) -> None:
    await harness.control("POST", "/config", {"duplicate_external_id": mode})
    async with harness.client() as kinguin:
        first = await place(kinguin, [buy()], "crash-recovery")
        second = await place(kinguin, [buy()], "crash-recovery")
    assert second.order_id == first.order_id
    assert len(await harness.sim_orders()) == 1


async def test_place_order_gives_up_after_max_attempts(harness: Harness) -> None:
    await harness.control(
        "POST", "/faults/errors", {"status": 503, "count": None, "endpoints": ["place_order"]}
    )
    async with harness.client(max_attempts=3) as kinguin:
        with pytest.raises(KinguinServerError):
            await place(kinguin, [buy()], "never")
    assert [e for e, _ in harness.calls] == ["place_order", "find_order"] * 3
    assert await harness.sim_orders() == []


# --- secrets --------------------------------------------------------------------------


def test_serial_never_in_repr_str_or_dump() -> None:
    key = Key.model_validate(
        {"id": "k1", "serial": "SECRET-SERIAL-1", "type": "text/plain", "productId": "p"}
    )
    for text in (repr(key), str(key), key.model_dump_json(), str(key.model_dump())):
        assert "SECRET-SERIAL-1" not in text
    assert key.plaintext() == b"SECRET-SERIAL-1"


@pytest.mark.parametrize(
    "payload",
    [
        {"serial": "SECRET-SERIAL-2", "type": "text/plain"},  # no id
        {"id": "k", "serial": "SECRET-SERIAL-2", "type": "text/html"},
        {"id": "k", "serial": "SECRET-SERIAL-2!", "type": "image/png"},  # not base64
    ],
)
def test_serial_never_in_validation_errors(payload: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as caught:
        Key.model_validate(payload)
    assert "SECRET-SERIAL-2" not in str(caught.value) + repr(caught.value)


async def test_client_logs_and_errors_never_hold_serials(harness: Harness) -> None:
    with capture_logs() as logs:
        async with harness.client() as kinguin:
            order = await place(kinguin, [buy(MIXED_PRODUCT_ID, 4)], "quiet")
            await harness.control("POST", f"/orders/{order.order_id}/complete")
            keys = await kinguin.get_keys(order.order_id)
    serials = [k.serial.get_secret_value() for k in keys]
    assert serials and not any(s in repr(logs) for s in serials)
    assert not any(s in repr(keys) for s in serials)


# --- units: classification, parsing, wire format ----------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "expected", "retryable"),
    [
        (400, "ConstraintViolation", ConstraintViolationError, False),
        (401, "Authorization", AuthorizationError, False),
        (401, None, AuthorizationError, False),
        (422, "OrderFailed", OrderFailedError, False),
        (422, "ProductUnavailable", ProductUnavailableError, False),
        (422, "InsufficientBalance", InsufficientBalanceError, False),
        (404, "OrderNotFound", OrderNotFoundError, False),
        (429, None, RateLimitedError, True),
        (500, "Error", KinguinServerError, True),
        (502, None, KinguinServerError, True),
        (409, "ResourceLock", KinguinServerError, True),
        (400, "Preorder", KinguinResponseError, False),
    ],
)
def test_classify_error(
    status: int, kind: str | None, expected: type[KinguinError], retryable: bool
) -> None:
    error = classify_error(status, kind, "why")
    assert type(error) is expected and error.retryable is retryable
    assert error.status == status and "why" in str(error)


def test_error_body_accepts_title_or_type() -> None:
    documented = ErrorBody.model_validate(
        {"kind": "ConstraintViolation", "status": 400, "title": "Bad Request", "detail": "d"}
    )
    observed = ErrorBody.model_validate(
        {"kind": "Error", "status": 500, "type": "Internal Server Error", "detail": "d"}
    )
    assert documented.title == "Bad Request" and observed.type == "Internal Server Error"


def test_decimals_travel_exactly() -> None:
    assert dump_json({"price": Decimal("19.99"), "qty": 2}) == '{"price":19.99,"qty":2}'
    assert load_json('{"balance": 0.1}')["balance"] == Decimal("0.1")
    wire = OrderProductRequest(product_id="p", qty=1, price=Decimal("5.29")).to_wire()
    assert dump_json(wire) == '{"productId":"p","qty":1,"price":5.29}'


def test_order_status_event_parses_kinguin_time_format() -> None:
    event = OrderStatusEvent.model_validate(
        {
            "orderId": "PHS84FJAG5U",
            "orderExternalId": "x",
            "status": "completed",
            "updatedAt": "2020-10-16T11:24:08.025+00:00",
        }
    )
    assert format_event_time(event.updated_at) == "2020-10-16T11:24:08.025+00:00"
