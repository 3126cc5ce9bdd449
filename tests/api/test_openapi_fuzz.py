"""Schemathesis against the live in-process API, driven by the API's own `/openapi.json`.

Every operation gets `MAX_EXAMPLES` generated requests over real HTTP (valid and invalid
headers, query strings, path parameters and bodies, from Schemathesis' positive and
negative modes, plus raw Latin-1 header bytes and NULs in parameters), twice:

- as a stranger: whatever credentials Hypothesis makes up;
- authenticated: a working credential for each operation (a customer JWT, an admin JWT,
  the order token, a correctly signed IPN, the Kinguin secret), often the ids of a real
  order and payment, and the seeded catalog product, so the deep branches run too.

No answer may be a 5xx, and every answer of the application must be one the document
describes: status, media type, required headers, body schema. Rate limits are off, so a
429 hides nothing. (`GET /openapi.json` itself is skipped by Schemathesis, which never
fuzzes the operation serving its schema; `test_openapi.py` covers it.)

Schemathesis is synchronous (requests): it runs in a worker thread while the session's
event loop serves the API.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import traceback
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from harness import Served, serve_app

schemathesis = pytest.importorskip("schemathesis")

import requests  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

from bitloot.auth.tokens import mint_user_token  # noqa: E402
from bitloot.config import Settings  # noqa: E402
from bitloot.nowpayments.models import PAYMENT_STATUSES  # noqa: E402
from bitloot.nowpayments.signature import MalformedIpn, sign_ipn  # noqa: E402
from bitloot.server import build_app  # noqa: E402
from bitloot.sim.app import SimConfig  # noqa: E402

# Per operation and run; BITLOOT_FUZZ_EXAMPLES=500 for a longer soak.
MAX_EXAMPLES = int(os.environ.get("BITLOOT_FUZZ_EXAMPLES", "40"))
PRODUCT = "5c9b5f6b2539a4e8f172916a"
RATE_LIMITS_OFF = {
    "rate_limit_orders_per_minute": 0,
    "rate_limit_download_per_minute": 0,
    "rate_limit_download_per_address_per_minute": 0,
    "rate_limit_bad_signatures_per_minute": 0,
}
# Header values as raw bytes: requests sends str headers as Latin-1, so anything past
# ASCII arrives as bytes that are not UTF-8 (aiohttp surrogate-escapes them).
# Control characters are left out: the HTTP parser refuses those before the app runs.
LATIN1 = st.text(
    st.characters(codec="latin-1", exclude_categories=["Cc"]), min_size=1, max_size=24
).filter(lambda s: not s[0].isspace() and not s[-1].isspace())
# Query and path values PostgreSQL cannot store, or that are not UTF-8 once decoded.
NASTY = st.one_of(LATIN1, st.sampled_from(["\x00", "a\x00b@example.com", "%FF", "\x7f"]))

AMOUNT = st.decimals(min_value=0, max_value=100, places=8).map(str)
# What NOWPayments really sends, in any order of statuses and amounts (ids as numbers too).
PLAUSIBLE_IPN = st.fixed_dictionaries(
    {
        "payment_id": st.integers(1, 10**10) | st.integers(1, 10**10).map(str),
        "payment_status": st.sampled_from(PAYMENT_STATUSES),
        "price_amount": AMOUNT,
        "price_currency": st.sampled_from(["eur", "EUR", "usd"]),
        "pay_amount": AMOUNT,
        "actually_paid": AMOUNT,
        "pay_currency": st.just("btc"),
    },
    optional={"outcome_amount": AMOUNT, "updated_at": st.integers(0, 2 * 10**12)},
)

pytestmark = pytest.mark.timeout(300)

Conn = Any


@dataclass(frozen=True)
class Seeds:
    """What the authenticated run may use: real ids and working credentials."""

    order_id: str
    order_token: str
    payment_id: str
    customer: str
    admin: str
    ipn_secret: str
    kinguin_secret: str

    def tokens(self, schemes: set[str]) -> list[str]:
        """Tokens that satisfy one of `schemes` (bearer schemes of the document)."""
        tokens = []
        if "userToken" in schemes:
            tokens += [self.customer, self.admin]
        if "orderToken" in schemes:
            tokens.append(self.order_token)
        if "adminToken" in schemes:
            tokens.append(self.admin)
        return tokens


@pytest.fixture
async def fuzz_api(make_settings: Callable[..., Settings], api_port: int) -> AsyncIterator[Served]:
    served = await serve_app(await build_app(make_settings(**RATE_LIMITS_OFF)), api_port)
    yield served
    await served.runner.cleanup()


@pytest.fixture
async def seeds(
    fuzz_api: Served, sim: Served, conn: Conn, make_settings: Callable[..., Settings]
) -> Seeds:
    """A catalog product, and a customer's order paid through the NOWPayments simulator."""
    await conn.execute(
        "INSERT INTO products (product_id, name, price, currency, max_cost)"
        " VALUES (%s, 'Game', 14.99, 'eur', 12)",
        (PRODUCT,),
    )
    settings = make_settings()
    customer = mint_user_token(settings, sub="user-1", email="ada@example.com")
    body = {"email": "ada@example.com", "items": [{"productId": PRODUCT, "qty": 1}]}
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {customer}"}
        async with http.post(f"{fuzz_api.url}/orders", json=body, headers=headers) as resp:
            created = await resp.json()
            assert resp.status == 201, created
        cur = await conn.execute("SELECT invoice_id FROM orders WHERE id = %s", (created["id"],))
        (invoice,) = await cur.fetchone()
        pay = {"wait": True, "interval_ms": 0, "retry_delays_ms": []}
        url = f"{sim.url}/nowpayments/sim/invoices/{invoice}/pay"
        async with http.post(url, json=pay) as resp:
            assert resp.status == 201, await resp.text()
    cur = await conn.execute(
        "SELECT payment_id FROM payments WHERE order_id = %s", (created["id"],)
    )
    (payment_id,) = await cur.fetchone()
    sim_config = SimConfig()
    return Seeds(
        order_id=created["id"],
        order_token=created["accessToken"],
        payment_id=payment_id,
        customer=customer,
        admin=mint_user_token(settings, sub="ops-1", admin=True),
        ipn_secret=sim_config.nowpayments_ipn_secret,
        kinguin_secret=sim_config.kinguin_webhook_secret,
    )


Draw = Callable[[Any], Any]


def _definition(case: Any) -> dict[str, Any]:
    paths: dict[str, Any] = case.operation.schema.raw_schema["paths"]
    definition: dict[str, Any] = paths[case.operation.path][case.operation.method.lower()]
    return definition


def _schemes(case: Any) -> set[str]:
    return {name for alt in _definition(case).get("security", []) for name in alt}


def _nasty(case: Any, draw: Draw) -> tuple[dict[str, str], dict[str, str]]:
    """Sometimes replace a declared header with raw Latin-1 bytes, a query value with a NUL
    or undecodable text, a path value with a NUL: (headers, query) overrides."""
    raw = case.operation.schema.raw_schema
    schemes = raw["components"]["securitySchemes"]
    header_names = [
        p["name"] for p in _definition(case).get("parameters", []) if p["in"] == "header"
    ]
    for name in _schemes(case):
        scheme = schemes[name]
        header_names.append("Authorization" if scheme["type"] == "http" else scheme["name"])
    headers = {}
    for name in dict.fromkeys(header_names):
        if draw(st.integers(0, 3)) == 0:
            prefix = "Bearer " if name == "Authorization" and draw(st.booleans()) else ""
            headers[name] = prefix + draw(LATIN1)
    query = {}
    for param in _definition(case).get("parameters", []):
        if param["in"] == "query" and draw(st.integers(0, 3)) == 0:
            query[param["name"]] = draw(NASTY)
        if param["in"] == "path" and case.path_parameters and draw(st.integers(0, 7)) == 0:
            case.path_parameters[param["name"]] = "a\x00b"
    return headers, query


def _seeded(case: Any, draw: Draw, seeds: Seeds) -> dict[str, Any]:
    """Point the case at real data and working credentials (each only some of the time);
    the extra arguments of `case.call`."""
    headers: dict[str, str] = {}
    extra: dict[str, Any] = {}
    tokens = seeds.tokens(_schemes(case))
    if tokens:
        headers["Authorization"] = f"Bearer {draw(st.sampled_from(tokens))}"
    params = case.path_parameters or {}
    if "order_id" in params and draw(st.booleans()):
        params["order_id"] = seeds.order_id
    if "payment_id" in params and draw(st.booleans()):
        params["payment_id"] = seeds.payment_id

    body = case.body
    path = case.operation.path
    if path == "/orders" and isinstance(body, dict) and draw(st.booleans()):
        # An order that can succeed: the catalog product (once), a plain address.
        body["items"] = [{"productId": PRODUCT, "qty": draw(st.integers(1, 9))}]
        body["email"] = "ada@example.com"
    if path == "/webhooks/kinguin":
        headers["X-Event-Secret"] = seeds.kinguin_secret
        if isinstance(body, dict) and draw(st.booleans()):
            body["orderExternalId"] = seeds.order_id
    if path == "/webhooks/nowpayments":
        if draw(st.integers(0, 3)) == 0:
            body = draw(PLAUSIBLE_IPN)
        if isinstance(body, dict) and draw(st.booleans()):
            body["order_id"] = seeds.order_id
        if isinstance(body, bytes):  # negative mode may send raw bytes
            raw_body = body
        elif isinstance(body, dict | list | str | int | float | bool | type(None)):
            raw_body = json.dumps(body, ensure_ascii=draw(st.booleans())).encode()
        else:  # no body at all
            raw_body = b""
        try:
            headers["x-nowpayments-sig"] = sign_ipn(raw_body, seeds.ipn_secret)
        except MalformedIpn:
            headers["x-nowpayments-sig"] = "0" * 128
        headers["Content-Type"] = "application/json"
        extra["data"] = raw_body  # sent exactly as signed
    return {"headers": headers, **extra}


def fuzz(base_url: str, seeds: Seeds | None) -> tuple[list[str], dict[str, int]]:
    """Run every operation; the failures (one per failing operation) and the statuses seen."""
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    conformance = [
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
    ]
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    failures: list[str] = []
    seen: dict[str, int] = {}
    session = requests.Session()
    for result in schema.get_all_operations():
        operation = result.ok()
        strategy = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy, data=st.data())
        def run(case: Any, data: st.DataObject) -> None:
            headers, query = _nasty(case, data.draw)
            kwargs = _seeded(case, data.draw, seeds) if seeds is not None else {}
            # Working credentials win: their absence is what the stranger run is for.
            kwargs["headers"] = {**headers, **kwargs.get("headers", {})}
            response = case.call(base_url=base_url, session=session, params=query, **kwargs)
            key = f"{operation.label} {response.status_code}"
            seen[key] = seen.get(key, 0) + 1
            # The HTTP parser refuses some requests (a URL over 8 kB) before the app sees
            # them: no request id, a plain-text 400. The document describes the app.
            from_app = "X-Request-Id" in response.headers
            checks = [not_a_server_error, *(conformance if from_app else [])]
            case.validate_response(response, checks=checks)

        try:
            run()
        except Exception as exc:
            trace = "".join(traceback.format_exception(exc))
            failures.append(f"{operation.label}:\n{trace[-4000:]}")
    session.close()
    return failures, seen


@pytest.mark.parametrize("who", ["stranger", "authenticated"])
async def test_no_generated_request_gets_a_server_error(
    fuzz_api: Served, seeds: Seeds, who: str
) -> None:
    started = time.monotonic()
    failures, seen = await asyncio.to_thread(
        fuzz, fuzz_api.url, seeds if who == "authenticated" else None
    )
    print(f"\n{who}: {sum(seen.values())} requests in {time.monotonic() - started:.1f}s")
    for key in sorted(seen):
        print(f"  {key}: {seen[key]}")
    assert not failures, "\n\n".join(failures)
    assert not [key for key in seen if key.rsplit(" ", 1)[1].startswith("5")]
    if who == "authenticated":
        # The credentials and seeded ids worked: the deep branches were reached.
        for reached in (
            "POST /orders 201",
            "GET /orders/{order_id} 200",
            "GET /fulfillment/{order_id}/status 200",
            "GET /admin/payments/{payment_id} 200",
            "GET /admin/orders/{order_id}/fulfillment 200",
            "POST /webhooks/nowpayments 200",
            "POST /webhooks/kinguin 204",
        ):
            assert seen.get(reached), (reached, sorted(seen))
