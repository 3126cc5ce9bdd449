"""The NOWPayments simulator over real HTTP on 127.0.0.1: its API shapes, and the IPNs it
posts to a real receiving server, each checked with the production verifier."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bitloot.nowpayments.models import Ipn
from bitloot.nowpayments.signature import canonical_ipn_json, parse_ipn_json, verify_ipn_signature
from bitloot.sim.nowpayments import create_nowpayments_sim
from bitloot.sim.nowpayments_state import js_number

API_KEY = "sim-api-key-5f2a"
IPN_SECRET = "sim-ipn-secret-81b0"
FAST = [20, 20, 20]  # retry schedule for tests, in ms


@dataclass
class Received:
    signature: str | None
    body: bytes

    @property
    def ipn(self) -> Ipn:
        return Ipn.from_parsed(parse_ipn_json(self.body))


@dataclass
class Receiver:
    """The merchant's IPN endpoint: answers from `codes` (then 200), after `delays_s`."""

    codes: list[int] = field(default_factory=list)
    delays_s: list[float] = field(default_factory=list)
    got: list[Received] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        index = len(self.got)
        self.got.append(Received(request.headers.get("x-nowpayments-sig"), await request.read()))
        if index < len(self.delays_s):
            await asyncio.sleep(self.delays_s[index])
        code = self.codes[index] if index < len(self.codes) else 200
        return web.Response(status=code, text="ok")

    def statuses(self) -> list[str]:
        return [r.ipn.payment_status for r in self.got]


@dataclass
class Env:
    base: str
    http: aiohttp.ClientSession
    receiver: Receiver

    @property
    def api(self) -> str:
        return f"{self.base}/nowpayments/v1"

    async def call(
        self, method: str, path: str, body: Any = None, *, key: str | None = API_KEY
    ) -> tuple[int, Any]:
        headers = {"x-api-key": key} if key is not None else {}
        async with self.http.request(
            method, f"{self.base}/nowpayments{path}", json=body, headers=headers
        ) as resp:
            is_json = resp.content_type == "application/json"
            return resp.status, await resp.json() if is_json else await resp.text()

    async def invoice(self, **extra: Any) -> str:
        body = {
            "price_amount": 19.99,
            "price_currency": "eur",
            "order_id": "order-7",
            "order_description": "Game key",
            "ipn_callback_url": f"{self.base}/ipn",
            **extra,
        }
        status, data = await self.call("POST", "/v1/invoice", body)
        assert status == 201, data
        return str(data["id"])

    async def pay(self, invoice_id: str, **body: Any) -> dict[str, Any]:
        body.setdefault("wait", True)
        body.setdefault("retry_delays_ms", FAST)
        status, data = await self.call("POST", f"/sim/invoices/{invoice_id}/pay", body, key=None)
        assert status == 201, data
        return dict(data)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    receiver = Receiver()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = web.Application()
    app.router.add_post("/ipn", receiver.handle)
    sim = create_nowpayments_sim(
        api_key=API_KEY, ipn_secret=IPN_SECRET, public_base_url=base, ipn_timeout_s=0.3
    )
    app.add_subapp("/nowpayments", sim)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        async with aiohttp.ClientSession() as http:
            yield Env(base, http, receiver)
    finally:
        await runner.cleanup()


def assert_all_verified(receiver: Receiver) -> None:
    for item in receiver.got:
        assert verify_ipn_signature(item.body, item.signature, IPN_SECRET) == "utf8-lists"


# --- IPN delivery ------------------------------------------------------------------------


async def test_each_status_change_sends_one_verified_ipn_in_order(env: Env) -> None:
    result = await env.pay(await env.invoice())
    statuses = ["waiting", "confirming", "confirmed", "sending", "finished"]
    assert env.receiver.statuses() == statuses
    assert_all_verified(env.receiver)
    assert result["done"] is True
    assert [d["response_code"] for d in result["deliveries"]] == [200] * 5
    payment_id = result["payment_id"]
    for item in env.receiver.got:
        # Ids as the docs show them: payment_id a JSON number, purchase_id a string.
        assert f'"payment_id":{payment_id},'.encode() in item.body
        assert b'"purchase_id":"' in item.body
        assert item.ipn.payment_id == payment_id
        assert item.ipn.order_id == "order-7"
    last = env.receiver.got[-1].ipn
    assert last.actually_paid == last.pay_amount
    assert last.price_amount == Decimal("19.99")
    assert env.receiver.got[0].ipn.actually_paid == 0
    status, payment = await env.call("GET", f"/v1/payment/{payment_id}")
    assert status == 200
    assert payment["payment_status"] == "finished"
    assert payment["payment_id"] == int(payment_id)  # a number in GET /payment (docs 2.5)


async def test_tiny_amounts_are_written_as_literal_decimals(env: Env) -> None:
    await env.pay(await env.invoice(), statuses=["finished"], faults={"tiny_amounts": True})
    body = env.receiver.got[0].body
    assert b'"pay_amount":0.0000635,' in body
    assert b'"actually_paid":0.0000635,' in body
    assert b"e-" not in body
    assert_all_verified(env.receiver)
    assert env.receiver.got[0].ipn.outcome_amount == Decimal("0.00006318")


async def test_non_ascii_text_is_sent_and_signed_unescaped(env: Env) -> None:
    await env.pay(
        await env.invoice(order_description="Clé"),
        statuses=["finished"],
        faults={"non_ascii": True},
    )
    item = env.receiver.got[0]
    assert "Clé".encode() in item.body
    assert b"\\u00e9" not in item.body
    assert item.ipn.order_description is not None
    assert item.ipn.order_description.startswith("Clé — Clé")
    assert verify_ipn_signature(item.body, item.signature, IPN_SECRET) == "utf8-lists"
    escaped = canonical_ipn_json(
        parse_ipn_json(item.body), ensure_ascii=True, arrays_as_objects=False
    )
    ascii_sig = hmac.new(IPN_SECRET.encode(), escaped.encode(), hashlib.sha512).hexdigest()
    assert ascii_sig != item.signature  # the sim signs the UTF-8 text, not the escaped one


async def test_fee_object_and_extra_ids_are_signed_and_parsed(env: Env) -> None:
    await env.pay(
        await env.invoice(), statuses=["finished"], faults={"fee_object": True, "extra_ids": True}
    )
    item = env.receiver.got[0]
    assert b'"fee":{"currency":"btc","depositFee":"' in item.body
    assert b'"payment_extra_ids":[' in item.body
    assert_all_verified(env.receiver)
    ipn = item.ipn
    assert ipn.fee is not None
    assert ipn.fee.currency == "btc"
    assert len(ipn.payment_extra_ids) == 2


async def test_duplicates_repeat_each_ipn_with_the_same_body(env: Env) -> None:
    await env.pay(await env.invoice(), statuses=["waiting", "finished"], faults={"duplicate": 2})
    got = env.receiver.got
    assert env.receiver.statuses() == ["waiting"] * 3 + ["finished"] * 3
    assert got[0].body == got[1].body == got[2].body
    assert got[0].signature == got[2].signature
    assert_all_verified(env.receiver)


async def test_reorder_delivers_later_statuses_first(env: Env) -> None:
    statuses = ["waiting", "confirming", "finished"]
    await env.pay(await env.invoice(), statuses=statuses, faults={"reorder": True})
    assert env.receiver.statuses() == list(reversed(statuses))
    assert_all_verified(env.receiver)


async def test_non_2xx_answers_are_retried_on_the_schedule(env: Env) -> None:
    env.receiver.codes = [500, 503]
    result = await env.pay(await env.invoice(), statuses=["finished"])
    attempts = result["deliveries"][0]["attempts"]
    assert [a["status"] for a in attempts] == [500, 503, 200]
    assert result["deliveries"][0]["delivered"] is True
    assert len(env.receiver.got) == 3
    assert len({r.body for r in env.receiver.got}) == 1


async def test_delivery_gives_up_after_the_last_retry(env: Env) -> None:
    env.receiver.codes = [500] * 10
    result = await env.pay(await env.invoice(), statuses=["finished"], retry_delays_ms=[10, 10])
    delivery = result["deliveries"][0]
    assert [a["status"] for a in delivery["attempts"]] == [500, 500, 500]
    assert delivery["delivered"] is False
    assert delivery["done"] is True


async def test_a_slow_answer_counts_as_failed_and_is_retried(env: Env) -> None:
    env.receiver.delays_s = [0.6]  # the sim in this fixture waits 0.3 s
    result = await env.pay(await env.invoice(), statuses=["finished"])
    attempts = result["deliveries"][0]["attempts"]
    assert attempts[0]["error"] == "timeout"
    assert attempts[0]["status"] is None
    assert attempts[1]["status"] == 200


async def test_redeposit_sends_a_child_payment_with_parent_id(env: Env) -> None:
    result = await env.pay(await env.invoice(), statuses=["finished"], faults={"redeposit": True})
    parent, child = (r.ipn for r in env.receiver.got)
    assert parent.payment_id == result["payment_id"]
    assert child.parent_payment_id == parent.payment_id
    assert child.payment_id != parent.payment_id
    assert child.order_id == parent.order_id
    assert child.invoice_id == parent.invoice_id
    assert child.payment_status == "partially_paid"
    assert child.actually_paid is not None
    assert parent.pay_amount is not None
    assert child.actually_paid < parent.pay_amount
    assert_all_verified(env.receiver)


async def test_underpayment_and_wrong_currency_are_reported(env: Env) -> None:
    await env.pay(
        await env.invoice(),
        statuses=["partially_paid"],
        actually_paid="0.0001",
        price_currency="USD",
        pay_currency="ETH",
    )
    ipn = env.receiver.got[0].ipn
    assert ipn.actually_paid == Decimal("0.0001")
    assert (ipn.price_currency, ipn.pay_currency, ipn.outcome_currency) == ("usd", "eth", "eth")


async def test_without_wait_the_drive_runs_in_background(env: Env) -> None:
    invoice_id = await env.invoice()
    result = await env.pay(invoice_id, wait=False, interval_ms=50)
    assert result["done"] is False
    path = f"/sim/payments/{result['payment_id']}/deliveries"
    for _ in range(100):
        status, deliveries = await env.call("GET", path, key=None)
        assert status == 200
        if deliveries["done"]:
            break
        await asyncio.sleep(0.05)
    assert deliveries["done"] is True
    assert [d["payment_status"] for d in deliveries["deliveries"]] == [
        "waiting",
        "confirming",
        "confirmed",
        "sending",
        "finished",
    ]


async def test_ipn_log_and_reset(env: Env) -> None:
    result = await env.pay(await env.invoice(), statuses=["waiting", "expired"])
    status, listing = await env.call("GET", "/sim/ipns", key=None)
    assert status == 200
    assert [i["payment_status"] for i in listing["items"]] == ["waiting", "expired"]
    assert all(i["response_code"] == 200 for i in listing["items"])
    assert listing["items"][0]["body"].encode() == env.receiver.got[0].body
    status, _ = await env.call("POST", "/sim/reset", key=None)
    assert status == 204
    assert (await env.call("GET", "/sim/ipns", key=None))[1] == {"items": []}
    assert (await env.call("GET", f"/v1/payment/{result['payment_id']}"))[0] == 404


# --- the API surface ---------------------------------------------------------------------


async def test_api_key_is_required(env: Env) -> None:
    status, body = await env.call("POST", "/v1/invoice", {"price_amount": 1}, key=None)
    assert status == 401
    assert body["status"] is False
    assert body["statusCode"] == 401
    status, body = await env.call("POST", "/v1/invoice", {"price_amount": 1}, key="nope")
    assert (status, body["code"]) == (403, "INVALID_API_KEY")
    assert (await env.call("GET", "/v1/status", key=None)) == (200, {"message": "OK"})


async def test_payment_id_must_be_a_number(env: Env) -> None:
    status, body = await env.call("GET", "/v1/payment/abc")
    assert status == 400
    assert body == {
        "status": False,
        "statusCode": 400,
        "code": "INVALID_REQUEST_PARAMS",
        "message": "Payment id must be a number",
    }


async def test_invoice_response_shape(env: Env) -> None:
    status, data = await env.call(
        "POST", "/v1/invoice", {"price_amount": 1000, "price_currency": "usd"}
    )
    assert status == 201
    assert isinstance(data["id"], str)
    assert data["price_amount"] == "1000"  # a string, as in the docs' example
    assert data["invoice_url"] == f"{env.base}/nowpayments/invoice/{data['id']}"
    status, error = await env.call("POST", "/v1/invoice", {"price_currency": "usd"})
    assert (status, error["code"]) == (400, "INVALID_REQUEST_PARAMS")


async def test_created_payment_can_be_driven(env: Env) -> None:
    status, created = await env.call(
        "POST",
        "/v1/payment",
        {
            "price_amount": 10,
            "price_currency": "usd",
            "pay_currency": "btc",
            "ipn_callback_url": f"{env.base}/ipn",
        },
    )
    assert status == 201
    assert created["payment_status"] == "waiting"
    assert isinstance(created["payment_id"], str)  # a string here (docs 2.4)
    assert created["pay_amount"] == 0.00016
    assert env.receiver.got == []  # creating a payment sends nothing by itself
    status, _ = await env.call(
        "POST",
        f"/sim/payments/{created['payment_id']}/drive",
        {"statuses": ["confirming", "failed"], "wait": True},
        key=None,
    )
    assert status == 201
    assert env.receiver.statuses() == ["confirming", "failed"]
    assert env.receiver.got[0].ipn.invoice_id is None
    assert_all_verified(env.receiver)


async def test_invoice_page_is_read_only(env: Env) -> None:
    invoice_id = await env.invoice()
    for _ in range(2):
        status, page = await env.call("GET", f"/invoice/{invoice_id}", key=None)
        assert status == 200
        assert "Game key" in page
    assert (await env.call("GET", "/sim/ipns", key=None))[1] == {"items": []}


async def test_invoice_without_callback_cannot_be_paid(env: Env) -> None:
    invoice_id = await env.invoice(ipn_callback_url=None)
    status, body = await env.call(
        "POST", f"/sim/invoices/{invoice_id}/pay", {"wait": True}, key=None
    )
    assert status == 409
    assert "ipn_callback_url" in body["error"]


async def test_bad_control_bodies_are_rejected(env: Env) -> None:
    invoice_id = await env.invoice()
    path = f"/sim/invoices/{invoice_id}/pay"
    status, body = await env.call("POST", path, {"statuses": ["paid"]}, key=None)
    assert status == 400
    assert "statuses" in body["error"]
    status, _ = await env.call("POST", "/sim/invoices/999/pay", {}, key=None)
    assert status == 404


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("0.0000635", "0.0000635"),
        ("0.000001", "0.000001"),
        ("0.0000001", "1e-7"),
        ("0.00000015", "1.5e-7"),
        ("19.990", "19.99"),
        ("1000", "1000"),
        ("-0.5", "-0.5"),
        ("0", "0"),
        ("1e21", "1e+21"),
        ("123456789012345680000", "123456789012345680000"),
    ],
)
def test_numbers_are_written_the_way_javascript_prints_them(value: str, text: str) -> None:
    assert js_number(Decimal(value)) == text
