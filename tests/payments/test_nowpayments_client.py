"""The NOWPayments client over real HTTP on 127.0.0.1: against the simulator, and against
small scripted servers for retries, rate limits and timeouts."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bitloot.nowpayments.client import NowPaymentsClient, NowPaymentsError
from bitloot.nowpayments.models import Invoice
from bitloot.sim.nowpayments import create_nowpayments_sim

API_KEY = "np-test-key-7c1d2e"
IPN_SECRET = "np-test-ipn-secret"
INVOICE_BODY = (
    '{"id":"4522625843","token_id":"abc","order_id":"o-1","order_description":"x",'
    '"price_amount":"19.99","price_currency":"EUR","pay_currency":null,'
    '"invoice_url":"https://nowpayments.io/payment/?iid=4522625843"}'
)


@asynccontextmanager
async def serve(build: Callable[[str], web.Application]) -> AsyncIterator[str]:
    """Serve the app built for its own base URL on an ephemeral 127.0.0.1 port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    runner = web.AppRunner(build(base), shutdown_timeout=1)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        yield base
    finally:
        await runner.cleanup()


def sim_with_receiver(base: str) -> web.Application:
    """The simulator mounted as in production, plus an IPN endpoint that says 200."""

    async def ipn(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/ipn", ipn)
    sim = create_nowpayments_sim(api_key=API_KEY, ipn_secret=IPN_SECRET, public_base_url=base)
    app.add_subapp("/nowpayments", sim)
    return app


@pytest.fixture
async def sim_base() -> AsyncIterator[str]:
    async with serve(sim_with_receiver) as base:
        yield base


def client_for(base: str, **kwargs: Any) -> NowPaymentsClient:
    return NowPaymentsClient(f"{base}/nowpayments/v1", API_KEY, **kwargs)


async def make_invoice(client: NowPaymentsClient, base: str, price: str = "19.99") -> Invoice:
    return await client.create_invoice(
        price_amount=Decimal(price),
        price_currency="EUR",
        order_id="order-42",
        order_description="Steam key",
        ipn_callback_url=f"{base}/ipn",
        success_url=f"{base}/done",
    )


Step = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Script:
    """A tiny server that answers from a list of behaviours and records what it got."""

    steps: list[Step]
    hits: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits.append((dict(request.headers), await request.read()))
        step = self.steps[min(len(self.hits), len(self.steps)) - 1]
        return await step(request)

    def app(self, base: str) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


def respond(status: int, body: str = "{}", headers: dict[str, str] | None = None) -> Step:
    async def step(request: web.Request) -> web.StreamResponse:
        return web.Response(
            status=status, text=body, content_type="application/json", headers=headers
        )

    return step


async def test_create_invoice_returns_a_normalised_invoice(sim_base: str) -> None:
    async with client_for(sim_base) as client:
        invoice = await make_invoice(client, sim_base)
    assert invoice.id.isdigit()
    assert invoice.price_amount == Decimal("19.99")
    assert invoice.price_currency == "eur"
    assert invoice.order_id == "order-42"
    assert invoice.invoice_url == f"{sim_base}/nowpayments/invoice/{invoice.id}"
    assert invoice.created_at is not None
    assert invoice.created_at.tzinfo is not None
    async with aiohttp.ClientSession() as http, http.get(invoice.invoice_url) as page:
        assert page.status == 200
        assert "Steam key" in await page.text()


async def test_get_payment_normalises_numeric_ids_and_tiny_amounts(sim_base: str) -> None:
    async with client_for(sim_base) as client:
        invoice = await make_invoice(client, sim_base)
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{sim_base}/nowpayments/sim/invoices/{invoice.id}/pay",
                json={"wait": True, "faults": {"tiny_amounts": True}, "retry_delays_ms": []},
            ) as resp,
        ):
            assert resp.status == 201
            payment_id = (await resp.json())["payment_id"]
        payment = await client.get_payment(payment_id)
    assert payment.payment_id == payment_id
    assert payment.invoice_id == invoice.id
    assert payment.purchase_id is not None
    assert payment.purchase_id.isdigit()
    assert payment.payment_status == "finished"
    assert payment.pay_amount == Decimal("0.0000635")
    assert payment.actually_paid == Decimal("0.0000635")
    assert payment.price_amount == Decimal("19.99")
    assert payment.pay_currency == "btc"
    assert payment.updated_at is not None
    assert payment.updated_at.utcoffset() is not None


async def test_wrong_api_key_is_permanent_and_never_echoed(sim_base: str) -> None:
    secret_key = "wrong-key-SHOULD-NOT-LEAK"
    client = NowPaymentsClient(f"{sim_base}/nowpayments/v1", secret_key, backoff_base=5)
    async with client:
        started = time.monotonic()
        with pytest.raises(NowPaymentsError) as info:
            await make_invoice(client, sim_base)
    assert time.monotonic() - started < 2  # no backoff: not retried
    err = info.value
    assert (err.status, err.code, err.retryable) == (403, "INVALID_API_KEY", False)
    for text in (str(err), repr(err), repr(client)):
        assert secret_key not in text


async def test_non_numeric_payment_id_is_a_permanent_invalid_request(sim_base: str) -> None:
    async with client_for(sim_base) as client:
        with pytest.raises(NowPaymentsError) as info:
            await client.get_payment("abc")
    assert (info.value.status, info.value.code) == (400, "INVALID_REQUEST_PARAMS")
    assert not info.value.retryable
    assert "Payment id must be a number" in str(info.value)


async def test_status_is_true_against_the_simulator(sim_base: str) -> None:
    async with client_for(sim_base) as client:
        assert await client.status() is True


async def test_two_503_then_201_is_retried_and_succeeds() -> None:
    script = Script([respond(503), respond(503), respond(201, INVOICE_BODY)])
    async with serve(script.app) as base, client_for(base, backoff_base=0.01) as client:
        invoice = await make_invoice(client, base)
    assert len(script.hits) == 3
    assert invoice.id == "4522625843"
    assert invoice.price_currency == "eur"
    assert invoice.price_amount == Decimal("19.99")


async def test_price_goes_out_as_an_exact_json_number_with_the_api_key() -> None:
    script = Script([respond(201, INVOICE_BODY)])
    async with serve(script.app) as base, client_for(base) as client:
        await make_invoice(client, base, price="1234567.10")
    headers, body = script.hits[0]
    assert headers["x-api-key"] == API_KEY
    assert b'"price_amount":1234567.10,' in body
    assert b'"price_currency":"eur"' in body


async def test_429_waits_for_retry_after() -> None:
    script = Script([respond(429, headers={"Retry-After": "1"}), respond(201, INVOICE_BODY)])
    async with serve(script.app) as base, client_for(base, backoff_base=0.01) as client:
        started = time.monotonic()
        await make_invoice(client, base)
        elapsed = time.monotonic() - started
    assert len(script.hits) == 2
    assert elapsed >= 0.95


async def test_retry_after_is_capped() -> None:
    script = Script([respond(429, headers={"Retry-After": "3600"}), respond(201, INVOICE_BODY)])
    async with serve(script.app) as base, client_for(base, retry_after_cap=0.05) as client:
        started = time.monotonic()
        await make_invoice(client, base)
    assert time.monotonic() - started < 2
    assert len(script.hits) == 2


async def test_slow_endpoint_times_out_as_a_retryable_error() -> None:
    script = Script([])

    async def slow(request: web.Request) -> web.StreamResponse:
        # Released at the end so the server can shut down without waiting.
        await asyncio.wait_for(script.release.wait(), timeout=5)
        return web.Response(status=201, text=INVOICE_BODY)

    script.steps.append(slow)
    async with serve(script.app) as base:
        try:
            async with client_for(base, timeout=0.2, max_attempts=2, backoff_base=0.01) as client:
                with pytest.raises(NowPaymentsError) as info:
                    await make_invoice(client, base)
        finally:
            script.release.set()
    assert (info.value.code, info.value.retryable, info.value.status) == ("TIMEOUT", True, None)
    assert len(script.hits) == 2


async def test_5xx_until_the_last_attempt_gives_a_retryable_error() -> None:
    body = '{"status":false,"statusCode":502,"code":"BAD_GATEWAY","message":"upstream"}'
    script = Script([respond(502, body)])
    async with serve(script.app) as base, client_for(base, max_attempts=3, backoff_base=0.01) as c:
        with pytest.raises(NowPaymentsError) as info:
            await c.get_payment("1")
    assert len(script.hits) == 3
    assert (info.value.status, info.value.code, info.value.retryable) == (502, "BAD_GATEWAY", True)


async def test_4xx_is_not_retried() -> None:
    body = '{"status":false,"statusCode":400,"code":"AMOUNT_MINIMAL_ERROR","message":"too low"}'
    script = Script([respond(400, body)])
    async with serve(script.app) as base, client_for(base, backoff_base=0.01) as client:
        with pytest.raises(NowPaymentsError) as info:
            await make_invoice(client, base)
    assert len(script.hits) == 1
    assert info.value.code == "AMOUNT_MINIMAL_ERROR"
    assert not info.value.retryable


async def test_unexpected_success_body_is_a_bad_response() -> None:
    script = Script([respond(201, '{"id": "1"}')])
    async with serve(script.app) as base, client_for(base) as client:
        with pytest.raises(NowPaymentsError) as info:
            await make_invoice(client, base)
    assert info.value.code == "BAD_RESPONSE"
    assert "invoice_url" in str(info.value)


async def test_refused_connection_is_retryable_and_status_false() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but never listening: connections are refused
        async with client_for(f"http://127.0.0.1:{port}", max_attempts=2, backoff_base=0.01) as c:
            assert await c.status() is False
            with pytest.raises(NowPaymentsError) as info:
                await c.get_payment("1")
    assert (info.value.code, info.value.retryable) == ("CONNECTION_ERROR", True)
    assert API_KEY not in str(info.value)


async def test_a_given_session_is_used_and_left_open(sim_base: str) -> None:
    async with aiohttp.ClientSession() as session:
        client = NowPaymentsClient(f"{sim_base}/nowpayments/v1", API_KEY, session=session)
        async with client:
            assert await client.status()
        assert not session.closed
