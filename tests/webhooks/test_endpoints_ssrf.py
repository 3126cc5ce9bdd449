"""No server-side request forgery at registration: private, loopback, link-local and
metadata addresses (literal, or what a name resolves to) and plain http are refused, over
HTTP and from the CLI, unless BITLOOT_WEBHOOK_ALLOW_PRIVATE_URLS is set (metadata never)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from endpoints_support import Conn, bitloot, field, ok, usage_error
from harness import Served, serve_app

from bitloot.auth.tokens import mint_user_token
from bitloot.config import Settings
from bitloot.server import build_app
from bitloot.vault.crypto import generate_master_key

BASE = "/admin/webhook-endpoints"
REFUSED = {
    "https://127.0.0.1/hooks": "127.0.0.1 is not a public address",
    "https://10.1.2.3/hooks": "10.1.2.3 is not a public address",
    "https://192.168.0.10:8443/hooks": "192.168.0.10 is not a public address",
    "https://169.254.169.254/latest/meta-data": "cloud metadata address",
    "https://[::1]/hooks": "::1 is not a public address",
    "https://[::ffff:127.0.0.1]/hooks": "127.0.0.1 is not a public address",
    "https://localhost/hooks": "localhost resolves to a refused address",
    # 127.0.0.1 written as one number: only resolving it tells.
    "https://2130706433/hooks": "127.0.0.1 is not a public address",
    "http://93.184.215.14/hooks": "must be https",
    "https://user:pw@93.184.215.14/hooks": "credentials",
    "ftp://93.184.215.14/hooks": "must be https",
}


async def post(
    http: aiohttp.ClientSession, served: Served, token: str, url: str
) -> tuple[int, dict]:  # type: ignore[type-arg]
    headers = {"Authorization": f"Bearer {token}"}
    async with http.post(served.url + BASE, json={"url": url}, headers=headers) as resp:
        return resp.status, await resp.json()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_private_loopback_metadata_and_http_urls_are_refused(
    api: Served, http: aiohttp.ClientSession, make_settings: Callable[..., Settings], conn: Conn
) -> None:
    token = mint_user_token(make_settings(), sub="admin-7", admin=True)
    for url, why in REFUSED.items():
        status, problem = await post(http, api, token, url)
        assert status == 422, (url, problem)
        (error,) = problem["errors"]
        assert error["loc"] == ["body", "url"]
        assert why in error["msg"], (url, error)
    cur = await conn.execute("SELECT count(*) FROM webhook_endpoints")
    assert await cur.fetchone() == (0,)


async def test_private_urls_are_accepted_when_allowed_but_metadata_never(
    http: aiohttp.ClientSession, make_settings: Callable[..., Settings], api_port: int
) -> None:
    settings = make_settings(webhook_allow_private_urls=True)
    served = await serve_app(await build_app(settings), api_port)
    try:
        token = mint_user_token(settings, sub="admin-7", admin=True)
        for url in (
            "http://127.0.0.1:9999/hooks",
            "https://10.1.2.3/hooks",
            "https://[::1]/hooks",
            "https://localhost/hooks",
        ):
            status, created = await post(http, served, token, url)
            assert status == 201, (url, created)
        status, problem = await post(http, served, token, "https://169.254.169.254/latest")
        assert status == 422
        assert "cloud metadata address" in problem["errors"][0]["msg"]
    finally:
        await served.runner.cleanup()


async def test_the_cli_refuses_a_name_resolving_to_loopback_unless_allowed(
    tmp_path: Path, db_url: str
) -> None:
    keys = generate_master_key("k1")
    line = usage_error(bitloot(tmp_path, db_url, keys, "webhooks", "add", "https://localhost/x"))
    assert "localhost resolves to a refused address" in line
    line = usage_error(bitloot(tmp_path, db_url, keys, "webhooks", "add", "http://127.0.0.1/x"))
    assert "must be https" in line
    out = ok(
        bitloot(
            tmp_path,
            db_url,
            keys,
            "webhooks",
            "add",
            "http://127.0.0.1:9999/x",
            BITLOOT_WEBHOOK_ALLOW_PRIVATE_URLS="true",
        )
    )
    assert field(out, "url") == "http://127.0.0.1:9999/x"
