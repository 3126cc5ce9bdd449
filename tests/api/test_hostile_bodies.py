"""Bodies nested too deeply, and webhook times out of range: a 400 problem naming what is
wrong (and a warning in the log), quickly, never a 500."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from harness import Served
from structlog.testing import capture_logs

from bitloot.auth.tokens import mint_user_token
from bitloot.config import Settings
from bitloot.nowpayments.signature import RawNumber
from bitloot.sim.app import SimConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "payments"))
from ipn_support import ipn_for, post_ipn, signed

DEEP_ARRAYS = b"[" * 10_000 + b"]" * 10_000
DEEP_OBJECTS = b'{"a":' * 10_000 + b"0" + b"}" * 10_000


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession, url: str, body: bytes, **headers: str
) -> tuple[int, str, dict[str, Any]]:
    headers.setdefault("Content-Type", "application/json")
    async with http.post(url, data=body, headers=headers) as resp:
        return resp.status, resp.content_type, await resp.json(content_type=None)


@pytest.mark.parametrize("body", [DEEP_ARRAYS, DEEP_OBJECTS], ids=["arrays", "objects"])
async def test_deep_bodies_are_400_everywhere(
    api: Served, http: aiohttp.ClientSession, make_settings: Callable[..., Settings], body: bytes
) -> None:
    admin = mint_user_token(make_settings(), sub="ops-1", admin=True)
    order = uuid.uuid4()
    for path, headers in [
        ("/orders", {}),
        (f"/admin/orders/{order}/fulfillment/retry", {"Authorization": f"Bearer {admin}"}),
        (f"/admin/orders/{order}/delivery-email/resend", {"Authorization": f"Bearer {admin}"}),
        (
            "/webhooks/kinguin",
            {"X-Event-Secret": SimConfig().kinguin_webhook_secret, "X-Event-Name": "order.status"},
        ),
        ("/webhooks/nowpayments", {"x-nowpayments-sig": "0" * 128}),
    ]:
        started = time.perf_counter()
        with capture_logs() as logs:
            status, ctype, problem = await post(http, f"{api.url}{path}", body, **headers)
        assert time.perf_counter() - started < 1, path
        assert (status, ctype) == (400, "application/problem+json"), (path, problem)
        assert "deep" in problem["detail"], (path, problem)
        assert any(
            e["event"] == "http.bad_request" and e["log_level"] == "warning" for e in logs
        ), (path, logs)


async def test_an_ipn_with_a_deep_member_and_a_wrong_signature_is_400(
    api: Served, http: aiohttp.ClientSession
) -> None:
    # json.loads takes 300 levels; the signature check re-serialised them three frames per
    # level, every variant, since none matched: a RecursionError, a 500, for anyone.
    raw = b'{"payment_id": 1, "payment_status": "waiting", "x": ' + b"[" * 300 + b"]" * 300 + b"}"
    status, ctype, problem = await post_ipn(http, api.url, raw, "0" * 128)
    assert (status, ctype) == (400, "application/problem+json"), problem
    assert "nests deeper than 32" in problem["detail"]


@pytest.mark.parametrize(
    "updated_at",
    [
        RawNumber("1" + "0" * 400),  # epoch milliseconds past time_t
        RawNumber("99999999999999999999"),  # past the platform's calendar
        RawNumber("253402300800000"),  # year 10000
        "0001-01-01T00:00:00+01:00",  # before the first UTC datetime
        "9999-12-31T23:59:59-01:00",  # after the last
        "99999-01-01T00:00:00Z",
        RawNumber("-1e20"),
    ],
    ids=[
        "1e400-digits",
        "1e20",
        "year-10000",
        "year-1-east",
        "year-9999-west",
        "year-99999",
        "-1e20",
    ],
)
async def test_an_ipn_time_out_of_range_is_400_naming_it(
    api: Served, http: aiohttp.ClientSession, updated_at: Any
) -> None:
    raw, sig = signed(ipn_for(uuid.uuid4(), updated_at=updated_at))
    status, ctype, problem = await post_ipn(http, api.url, raw, sig)
    assert (status, ctype) == (400, "application/problem+json"), problem
    assert problem["detail"] == "IPN body has invalid fields: updated_at"


@pytest.mark.parametrize(
    "updated_at",
    [
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "99999-01-01T00:00:00.000+00:00",
        1e400,
        -1e20,
        10**400,
    ],
    ids=["year-1-east", "year-9999-west", "year-99999", "1e400", "-1e20", "10**400"],
)
async def test_a_kinguin_time_out_of_range_is_400_naming_it(
    api: Served, http: aiohttp.ClientSession, updated_at: Any
) -> None:
    event = {
        "orderId": "KG1",
        "orderExternalId": str(uuid.uuid4()),
        "status": "completed",
        "updatedAt": updated_at,
    }
    headers = {"X-Event-Secret": SimConfig().kinguin_webhook_secret, "X-Event-Name": "order.status"}
    async with http.post(f"{api.url}/webhooks/kinguin", json=event, headers=headers) as resp:
        problem = await resp.json(content_type=None)
        assert (resp.status, resp.content_type) == (400, "application/problem+json"), problem
    assert problem["detail"] == "The order event has missing or invalid fields: updatedAt."
