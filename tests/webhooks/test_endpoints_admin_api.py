"""`/admin/webhook-endpoints` over real HTTP: admin only, the secret in the registration's
and the rotation's answers only, every change audited, never cached."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from endpoints_support import Conn, audit_rows, database_text, expired_order_event
from harness import Served

from bitloot.auth.tokens import mint_user_token
from bitloot.config import Settings

BASE = "/admin/webhook-endpoints"
ADMIN_SUB = "admin-7"
PUBLIC_URL = "https://93.184.215.14/bitloot-hooks"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def admin(make_settings: Callable[..., Settings]) -> dict[str, str]:
    token = mint_user_token(make_settings(), sub=ADMIN_SUB, admin=True)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def customer(make_settings: Callable[..., Settings]) -> dict[str, str]:
    token = mint_user_token(make_settings(), sub="user-1", email="ada@example.com")
    return {"Authorization": f"Bearer {token}"}


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: dict[str, str],
    body: Any = None,
) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    async with http.request(method, url, headers=headers, json=body) as resp:
        assert "json" in resp.content_type, (resp.status, resp.content_type)
        assert resp.headers.get("Cache-Control") == "no-store"
        return resp.status, await resp.json(), resp.headers


async def register(
    http: aiohttp.ClientSession, api: Served, admin: dict[str, str], **body: Any
) -> dict[str, Any]:
    status, created, _ = await call(
        http, "POST", api.url + BASE, admin, {"url": PUBLIC_URL, **body}
    )
    assert status == 201, created
    return dict(created)


async def test_registration_answers_201_with_the_secret_shown_only_there(
    api: Served, http: aiohttp.ClientSession, admin: dict[str, str], conn: Conn
) -> None:
    body = {"url": PUBLIC_URL, "events": ["order.paid", "order.paid"], "description": "shop"}
    status, created, headers = await call(http, "POST", api.url + BASE, admin, body)
    assert status == 201, created
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert headers["Location"] == f"{BASE}/{created['id']}"
    assert created["url"] == PUBLIC_URL
    assert created["events"] == ["order.paid"]
    assert created["enabled"] is True
    assert created["createdBy"] == ADMIN_SUB
    assert [s["expiresAt"] for s in created["secrets"]] == [None]

    status, listed, _ = await call(http, "GET", api.url + BASE, admin)
    assert status == 200
    (item,) = listed["items"]
    assert item == {k: v for k, v in created.items() if k != "secret"}
    status, one, _ = await call(http, "GET", f"{api.url}{BASE}/{created['id']}", admin)
    assert status == 200 and one == item
    raw_b64 = secret.removeprefix("whsec_")
    assert raw_b64 not in json.dumps(listed) and raw_b64 not in json.dumps(one)
    assert raw_b64 not in await database_text(conn)

    (audit,) = await audit_rows(conn)
    assert audit["admin_id"] == ADMIN_SUB
    assert audit["action"] == "webhook_endpoint.add"
    assert audit["order_id"] is None
    assert audit["reason"] == "api"
    assert audit["details"]["endpointId"] == created["id"]
    assert raw_b64 not in json.dumps(audit["details"])


async def test_disable_enable_rotate_and_remove_are_audited(
    api: Served, http: aiohttp.ClientSession, admin: dict[str, str], conn: Conn
) -> None:
    created = await register(http, api, admin, events=["order.expired"])
    one = f"{api.url}{BASE}/{created['id']}"

    status, disabled, _ = await call(http, "POST", one + "/disable", admin, {"reason": "moving"})
    assert status == 200, disabled
    assert disabled["enabled"] is False and disabled["disabledReason"] == "moving"
    # Again: nothing changes, nothing more is audited.
    status, again, _ = await call(http, "POST", one + "/disable", admin, {"reason": "other"})
    assert status == 200 and again["disabledReason"] == "moving"
    # A disabled endpoint gets no event.
    await expired_order_event(conn)
    cur = await conn.execute("SELECT count(*) FROM webhook_deliveries")
    assert await cur.fetchone() == (0,)

    status, enabled, _ = await call(http, "POST", one + "/enable", admin)
    assert status == 200
    assert enabled["enabled"] is True and enabled["disabledReason"] is None

    before = datetime.now(UTC)
    status, rotated, _ = await call(http, "POST", one + "/rotate-secret", admin)
    assert status == 200, rotated
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]
    assert rotated["endpointId"] == created["id"]
    expires = datetime.fromisoformat(rotated["previousSecretExpiresAt"])
    overlap = timedelta(seconds=86400)  # the default BITLOOT_WEBHOOK_SECRET_OVERLAP
    assert (
        before + overlap - timedelta(seconds=5) < expires < before + overlap + timedelta(minutes=1)
    )
    status, shown, _ = await call(http, "GET", one, admin)
    assert [s["expiresAt"] is None for s in shown["secrets"]] == [True, False]
    assert "secret" not in shown

    await expired_order_event(conn)  # one pending delivery, failed by the removal
    status, removed, _ = await call(http, "DELETE", one, admin)
    assert status == 200, removed
    assert removed["id"] == created["id"] and removed["failedDeliveries"] == 1
    assert (await call(http, "GET", one, admin))[0] == 404
    assert (await call(http, "POST", one + "/enable", admin))[0] == 404
    assert (await call(http, "GET", api.url + BASE, admin))[1] == {"items": []}

    audits = await audit_rows(conn)
    assert [a["action"] for a in audits] == [
        "webhook_endpoint.add",
        "webhook_endpoint.disable",
        "webhook_endpoint.enable",
        "webhook_endpoint.rotate_secret",
        "webhook_endpoint.remove",
    ]
    assert audits[1]["reason"] == "moving"
    assert {a["admin_id"] for a in audits} == {ADMIN_SUB}
    dumped = json.dumps([a["details"] for a in audits])
    for secret in (created["secret"], rotated["secret"]):
        assert secret.removeprefix("whsec_") not in dumped


async def test_unknown_event_types_are_a_422_naming_them(
    api: Served, http: aiohttp.ClientSession, admin: dict[str, str], conn: Conn
) -> None:
    body = {"url": PUBLIC_URL, "events": ["order.paid", "order.shipped"]}
    status, problem, _ = await call(http, "POST", api.url + BASE, admin, body)
    assert status == 422, problem
    (error,) = problem["errors"]
    assert error["loc"] == ["body", "events"]
    assert "'order.shipped'" in error["msg"]
    for bad in ({"url": PUBLIC_URL, "events": []}, {"url": PUBLIC_URL, "secret": "whsec_x"}, {}):
        assert (await call(http, "POST", api.url + BASE, admin, bad))[0] == 422
    cur = await conn.execute("SELECT count(*) FROM webhook_endpoints")
    assert await cur.fetchone() == (0,)


async def test_a_malformed_or_unknown_id_is_a_404(
    api: Served, http: aiohttp.ClientSession, admin: dict[str, str]
) -> None:
    for endpoint_id in ("not-a-uuid", str(uuid.uuid4())):
        one = f"{api.url}{BASE}/{endpoint_id}"
        for method, url, body in (
            ("GET", one, None),
            ("POST", one + "/disable", {"reason": "r"}),
            ("POST", one + "/enable", None),
            ("POST", one + "/rotate-secret", None),
            ("DELETE", one, None),
        ):
            status, problem, _ = await call(http, method, url, admin, body)
            assert status == 404, (method, url, problem)


async def test_only_admins_may_manage_endpoints(
    api: Served,
    http: aiohttp.ClientSession,
    admin: dict[str, str],
    customer: dict[str, str],
    conn: Conn,
) -> None:
    created = await register(http, api, admin)
    one = f"{api.url}{BASE}/{created['id']}"
    operations = (
        ("POST", api.url + BASE, {"url": PUBLIC_URL}),
        ("GET", api.url + BASE, None),
        ("GET", one, None),
        ("POST", one + "/disable", {"reason": "r"}),
        ("POST", one + "/enable", None),
        ("POST", one + "/rotate-secret", None),
        ("DELETE", one, None),
    )
    for method, url, body in operations:
        assert (await call(http, method, url, {}, body))[0] == 401, (method, url)
        assert (await call(http, method, url, customer, body))[0] == 403, (method, url)
    bad = {"Authorization": "Bearer not-a-token"}
    assert (await call(http, "GET", api.url + BASE, bad))[0] == 401
    cur = await conn.execute("SELECT count(*), bool_and(enabled) FROM webhook_endpoints")
    assert await cur.fetchone() == (1, True)
    assert len(await audit_rows(conn)) == 1
