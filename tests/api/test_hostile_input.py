"""Hostile input against every route of the live in-process API: never a 5xx, and every
4xx a problem document.

The routes come from the application's router (as in `test_openapi.py`), so a new route is
covered without touching this file; its contract (`bitloot.web.contract`) says which body
model, query model and parameters it has. Each route gets, as a stranger, with a customer
token and with an admin token (the webhooks: unsigned, wrongly signed, and correctly signed
or with the right secret, the signature computed over the hostile body itself):

- every path parameter and query value as NUL, a lone surrogate's bytes, bytes that are not
  UTF-8, a long value and number-looking text; cursors that decode to NUL or a lone
  surrogate;
- bodies nested 10,000 (and 300) deep, arrays and objects, and every JSON type (null,
  true, 0, -0, 1e400, 10**400 written out, "", a 1 MB string, [], {}, NUL, a lone
  surrogate) as the whole body and in every field of the route's request model;
- headers near aiohttp's size limits;
- validly signed user JWTs with hostile claims (a role that is a list or an object, a
  subject with NUL or a lone surrogate or 3000 characters long, text dates, an absurd
  expiry), with a valid body where the route takes one.

Everything stays within what aiohttp's HTTP parser accepts, so every answer comes from the
application (it carries `X-Request-Id`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import jwt
import pytest
from aiohttp import web
from harness import TEST_JWT_SECRET, Served, serve_app
from yarl import URL

from bitloot.auth.tokens import mint_user_token
from bitloot.config import Settings
from bitloot.kinguin.models import format_event_time
from bitloot.nowpayments.signature import MalformedIpn, dump_json, sign_ipn
from bitloot.server import build_app
from bitloot.sim.app import SimConfig
from bitloot.web.contract import ApiKey, Contract, contract_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "payments"))
from ipn_support import IPN_SECRET, PRODUCT_ID, create_order, ipn_for

KINGUIN_SECRET = SimConfig().kinguin_webhook_secret
RATE_LIMITS_OFF = {
    "rate_limit_orders_per_minute": 0,
    "rate_limit_download_per_minute": 0,
    "rate_limit_download_per_address_per_minute": 0,
    "rate_limit_bad_signatures_per_minute": 0,
}
PROBLEM = "application/problem+json"
DEPTH = 10_000
MB_STRING = '"' + "a" * (1 << 20) + '"'
# Every JSON type, as literal JSON text (so 1e400, -0 and 10**400 arrive as written).
JSON_VALUES: tuple[str, ...] = (
    "null",
    "true",
    "0",
    "-0",
    "1e400",
    "1" + "0" * 400,
    '""',
    MB_STRING,
    "[]",
    "{}",
    '"\\u0000"',
    '"a\\u0000b"',
    '"\\ud800"',
    '"\\udfff x"',
)
# Times out of every range, for fields and parameters that hold a time.
TIME_VALUES: tuple[str, ...] = (
    '"0001-01-01T00:00:00+01:00"',
    '"9999-12-31T23:59:59-01:00"',
    '"99999-01-01T00:00:00Z"',
    "-1e20",
    "-100000000000000000000",
    '"1' + "0" * 30 + '"',
    "253402300800000",
)
# Path segments and query values, already percent-encoded: NUL, a lone surrogate's
# (CESU-8) bytes, bytes that are not UTF-8, long text, numbers that overflow.
URL_VALUES: tuple[str, ...] = (
    "%00",
    "a%00b",
    "%ED%A0%80",
    "%FF%FE",
    "x" * 2000,
    "-0",
    "1e400",
    "1" + "0" * 400,
    "%20",
)
# Near aiohttp's limits (8190 bytes per header line), never over them.
BIG = "b" * 8000


def _cursor(*members: object) -> str:
    raw = json.dumps(list(members), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# Cursors that decode to NUL, a lone surrogate or absurd positions (`cursor` parameters).
CURSORS: tuple[str, ...] = (
    _cursor(1, "2026-01-01T00:00:00+00:00", "\x00"),
    _cursor(1, "2026-01-01T00:00:00+00:00", "\ud800"),
    _cursor(1, "2026-01-01T00:00:00+00:00", "a\x00b"),
    _cursor(1, "0001-01-01T00:00:00+14:00", "x"),
    _cursor(1, "9999-12-31T23:59:59-14:00", "x"),
    _cursor(1, "2026-01-01T00:00:00+00:00", 10**400),
    base64.urlsafe_b64encode(b"[" * 3000).decode(),
)


def _deep(kind: str, depth: int) -> str:
    opening, closing = ("[", "]") if kind == "array" else ('{"a":', "}")
    return opening * depth + "0" + closing * depth


# 300: json.loads takes it, and what walks the parsed value recursed past Python's limit.
DEEP_BODIES = {
    f"{kind}s nested {depth} deep": _deep(kind, depth)
    for kind in ("array", "object")
    for depth in (DEPTH, 300)
}


@dataclass
class Seeds:
    order_id: str
    customer: str
    admin: str
    hostile_tokens: dict[str, str]  # validly signed, with claims no IdP should send


@dataclass
class Probe:
    """One request; `what` says what was hostile about it."""

    method: str
    path: str  # percent-encoded
    what: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


@pytest.fixture
async def hostile_api(
    make_settings: Callable[..., Settings], api_port: int
) -> AsyncIterator[Served]:
    served = await serve_app(await build_app(make_settings(**RATE_LIMITS_OFF)), api_port)
    yield served
    await served.runner.cleanup()


@pytest.fixture
async def seeds(hostile_api: Served, conn: Any, make_settings: Callable[..., Settings]) -> Seeds:
    """A real order (its id fills path parameters and IPN and Kinguin bodies), and tokens."""
    settings = make_settings()
    async with aiohttp.ClientSession() as http:
        order_id = await create_order(http, hostile_api.url, conn)
    return Seeds(
        order_id=str(order_id),
        customer=mint_user_token(settings, sub="user-1", email="ada@example.com"),
        admin=mint_user_token(settings, sub="ops-1", admin=True),
        hostile_tokens=hostile_tokens(),
    )


def hostile_tokens() -> dict[str, str]:
    now = int(time.time())
    good: dict[str, Any] = {"sub": "user-1", "role": "customer", "iat": now, "exp": now + 600}
    variants: dict[str, dict[str, Any]] = {
        "role list": {"role": ["admin"]},
        "role object": {"role": {"admin": True}},
        "sub NUL": {"sub": "user\x00-1"},
        "sub surrogate": {"sub": "user-\ud800"},
        "sub 3000": {"sub": "u" * 3000},
        "admin sub NUL": {"sub": "ops\x00", "role": "admin"},
        "email NUL": {"email": "a\x00@example.com"},
        "iat text": {"iat": str(now)},
        "exp 10**400": {"exp": 10**400},
        "lifetime 10 years": {"exp": now + 10 * 365 * 86400},
    }
    return {
        name: jwt.encode({**good, **claims}, TEST_JWT_SECRET, algorithm="HS256")
        for name, claims in variants.items()
    }


# --- bodies -------------------------------------------------------------------------------

_HOLE = "\x01hostile\x01"


def _leaf_paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every member of `value`, at any depth (containers too: they get replaced whole)."""
    if prefix:
        yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaf_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaf_paths(item, (*prefix, index))


def _with_hole(value: Any, path: tuple[Any, ...]) -> Any:
    if not path:
        return _HOLE
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _with_hole(value.get(head), rest)}
    copy = list(value)
    copy[head] = _with_hole(copy[head], rest)
    return copy


def _fill(base: Any, path: tuple[Any, ...], literal: str) -> str:
    """`base` as JSON text with the member at `path` replaced by the JSON text `literal`."""
    text = dump_json(_with_hole(base, path))
    return text.replace(json.dumps(_HOLE), literal)


def _base_body(contract: Contract, seeds: Seeds) -> dict[str, Any]:
    """A valid body for the route's model (known ones), else one string per field."""
    assert contract.body is not None
    name = contract.body.__name__
    if name == "CreateOrderIn":
        return {"email": "ada@example.com", "items": [{"productId": PRODUCT_ID, "qty": 1}]}
    if name == "Ipn":
        return ipn_for(seeds.order_id, payment_id=str(uuid.uuid4().int)[:10])
    if name == "OrderStatusEvent":
        return {
            "orderId": "KG-HOSTILE",
            "orderExternalId": seeds.order_id,
            "status": "completed",
            "updatedAt": format_event_time(datetime.now(UTC)),
        }
    if name == "ReasonIn":
        return {"reason": "hostile input test"}
    return {f.alias or n: "x" for n, f in contract.body.model_fields.items()}


def _bodies(contract: Contract, seeds: Seeds) -> Iterator[tuple[str, str]]:
    """(what, JSON text): deep nesting, every JSON type whole and in every field."""
    yield from DEEP_BODIES.items()
    for literal in JSON_VALUES:
        yield f"body {literal[:12]}", literal
    if contract.body is None:
        return
    base = _base_body(contract, seeds)
    paths = list(_leaf_paths(base))
    for name, info in contract.body.model_fields.items():  # fields the base leaves out
        key = info.alias or name
        if (key,) not in paths:
            paths.append((key,))
    for path in paths:
        is_time = str(path[-1]).lower().endswith("at")  # updated_at, updatedAt, created_at
        for literal in (*JSON_VALUES, *(TIME_VALUES if is_time else ())):
            yield f"{'.'.join(map(str, path))}={literal[:12]}", _fill(base, path, literal)
        for depth in (DEPTH, 300):
            deep = _deep("array", depth)
            yield f"{'.'.join(map(str, path))}=deep {depth}", _fill(base, path, deep)


def _ipn_signature(raw: bytes) -> str:
    """The signature NOWPayments would send; for a body nobody could sign, an HMAC of the
    bytes (the server must refuse it before any signature matters)."""
    try:
        return sign_ipn(raw, IPN_SECRET)
    except (MalformedIpn, RecursionError):
        return hmac.new(IPN_SECRET.encode(), raw, hashlib.sha512).hexdigest()


# --- probes -------------------------------------------------------------------------------


def _routes(app: web.Application) -> Iterator[tuple[str, str, Contract | None]]:
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        canonical = route.resource.canonical if route.resource is not None else ""
        if "prefix" in info:  # a static directory
            canonical += "/{filename}"
        yield route.method, canonical, contract_of(route.handler)


def _fill_path(template: str, value: str, seeds: Seeds) -> str:
    out = template
    while "{" in out:
        start = out.index("{")
        end = out.index("}", start)
        out = out[:start] + value + out[end + 1 :]
    return out.replace("\x00seed\x00", quote(seeds.order_id))


def _credentials(contract: Contract | None, seeds: Seeds) -> list[tuple[str, dict[str, str]]]:
    if contract is not None and isinstance(contract.security, ApiKey):
        if contract.security.header == "X-Event-Secret":
            signed = {"X-Event-Secret": KINGUIN_SECRET, "X-Event-Name": "order.status"}
            return [("stranger", {}), ("webhook secret", signed)]
        # A wrong signature makes the server try every serialisation of the body.
        wrong = {contract.security.header: "0" * 128}
        return [("stranger", {}), ("wrong signature", wrong), ("signed", {})]  # signed per body
    return [
        ("stranger", {}),
        ("customer", {"Authorization": f"Bearer {seeds.customer}"}),
        ("admin", {"Authorization": f"Bearer {seeds.admin}"}),
    ]


def _query_names(contract: Contract | None) -> list[str]:
    if contract is None:
        return ["q"]
    names = [p.name for p in contract.params if p.location == "query"]
    if contract.query is not None:
        names += [f.alias or n for n, f in contract.query.model_fields.items()]
    return names or ["q"]


def probes(app: web.Application, seeds: Seeds) -> Iterator[Probe]:
    for method, template, contract in _routes(app):
        real = _fill_path(template, "\x00seed\x00", seeds)
        # Validly signed tokens with hostile claims, with a valid body where there is one
        # (so a subject that reaches the database gets there).
        if contract is None or not isinstance(contract.security, ApiKey):
            for name, raw_token in seeds.hostile_tokens.items():
                headers = {"Authorization": f"Bearer {raw_token}"}
                body = None
                if contract is not None and contract.body is not None:
                    body = dump_json(_base_body(contract, seeds)).encode()
                    headers["Content-Type"] = "application/json"
                yield Probe(method, real, f"token {name}", headers, body)
        for who, creds in _credentials(contract, seeds):
            signed = who == "signed"
            # Path segments.
            if "{" in template:
                for value in URL_VALUES:
                    yield Probe(
                        method,
                        _fill_path(template, value, seeds),
                        f"{who} path {value[:12]}",
                        dict(creds),
                    )
            # Query values.
            for name in _query_names(contract):
                values = [*URL_VALUES, *(CURSORS if name == "cursor" else ())]
                if name in ("from", "to"):
                    values += [quote(v.strip('"')) for v in TIME_VALUES]
                for value in values:
                    path = f"{real}?{quote(name)}={value}"  # values are URL-safe already
                    yield Probe(method, path, f"{who} query {name}={value[:12]}", dict(creds))
            # Headers near the limits, and every declared header parameter.
            big = {f"X-Filler-{i}": BIG for i in range(4)}
            yield Probe(method, real, f"{who} big headers", {**creds, **big})
            yield Probe(method, real, f"{who} X-Request-Id", {**creds, "X-Request-Id": BIG})
            yield Probe(
                method,
                real,
                f"{who} X-Forwarded-For",
                {**creds, "X-Forwarded-For": "1.2.3.4, " * 900},
            )
            yield Probe(
                method, real, f"{who} long bearer", {**creds, "Authorization": "Bearer " + BIG}
            )
            for param in contract.params if contract is not None else ():
                if param.location == "header":
                    yield Probe(
                        method, real, f"{who} header {param.name}", {**creds, param.name: BIG}
                    )
            # Bodies.
            if method != "POST":
                continue
            for what, text in _bodies(contract, seeds) if contract is not None else ():
                raw = text.encode("utf-8")
                headers = {**creds, "Content-Type": "application/json"}
                if signed:
                    headers["x-nowpayments-sig"] = _ipn_signature(raw)
                yield Probe(method, real, f"{who} {what}", headers, raw)


@dataclass
class Answer:
    status: int
    content_type: str
    from_app: bool


async def _send(http: aiohttp.ClientSession, base: str, probe: Probe) -> Answer:
    url = URL(base + probe.path, encoded=True)
    async with http.request(probe.method, url, headers=probe.headers, data=probe.body) as resp:
        await resp.read()
        return Answer(resp.status, resp.content_type, "X-Request-Id" in resp.headers)


async def test_no_hostile_input_gets_a_server_error(hostile_api: Served, seeds: Seeds) -> None:
    all_probes = list(probes(hostile_api.app, seeds))
    started = time.monotonic()
    gate = asyncio.Semaphore(8)
    failures: list[str] = []
    statuses: dict[int, int] = {}

    async def run(http: aiohttp.ClientSession, probe: Probe) -> None:
        async with gate:
            answer = await _send(http, hostile_api.url, probe)
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
        label = f"{probe.method} {probe.path[:80]} [{probe.what}]"
        if answer.status >= 500:
            failures.append(f"{label}: {answer.status}")
        elif not answer.from_app:
            failures.append(f"{label}: {answer.status} from the HTTP parser, not the app")
        elif answer.status >= 400 and answer.content_type != PROBLEM:
            failures.append(f"{label}: {answer.status} as {answer.content_type}")

    connector = aiohttp.TCPConnector(limit=8)
    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.gather(*(run(http, probe) for probe in all_probes))
    print(f"\n{len(all_probes)} requests in {time.monotonic() - started:.1f}s: {statuses}")
    assert not failures, f"{len(failures)} of {len(all_probes)}:\n" + "\n".join(failures[:40])
