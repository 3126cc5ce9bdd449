"""The key page in headless Chromium on the S3/R2 backend: the browser downloads each
ciphertext cross-origin, straight from the bucket, through a SigV4 presigned URL that a
server checking signatures and expiry (nanio) accepts.

nanio answers no CORS, so the bucket's CORS rule (PRODUCTION.md) is played by the proxy in
tests/s3_support.py, which forwards the signed requests untouched: the signatures the
browser presents are checked for real, and the CORS answer is the one R2 gives for that rule.
Without the rule for the page's origin, the browser refuses the download (second test).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest
from harness import Served, serve_app
from keypage_support import fulfilled_order, issued_keys
from s3_support import Nanio, cors_proxy_app, production_cors_rule
from test_keypage_browser import Console, chromium_browser, context, wait_state

from bitloot.auth.order_tokens import mint_order_token
from bitloot.config import Settings
from bitloot.sim.kinguin_catalog import TEXT_PRODUCT_ID
from bitloot.web.context import RESOURCES

# The Chromium fixtures, shared with the local-backend test.
__all__ = ["chromium_browser", "context"]

Conn = psycopg.AsyncConnection[Any]
BUCKET = f"bitloot-keypage-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
async def bucket(nanio: Nanio) -> str:
    await nanio.create_bucket(BUCKET)
    return BUCKET


@pytest.fixture
def rule_for() -> str:
    """Whose origin the bucket's CORS rule names: the key page's, unless a test says not."""
    return "the key page"


@pytest.fixture
async def bucket_endpoint(
    nanio: Nanio, bucket: str, api_port: int, rule_for: str
) -> AsyncIterator[Served]:
    origin = {
        "the key page": f"http://127.0.0.1:{api_port}",
        "another site": "https://shop.example.com",
    }[rule_for]
    served = await serve_app(cors_proxy_app(nanio.endpoint, [production_cors_rule(origin)]))
    yield served
    await served.runner.cleanup()


@pytest.fixture
async def api(
    make_settings: Callable[..., Settings],
    api_port: int,
    nanio: Nanio,
    bucket: str,
    bucket_endpoint: Served,
) -> AsyncIterator[Served]:
    """`bitloot serve` storing in the bucket, reached through its CORS-answering endpoint."""
    from bitloot.server import build_app

    settings = make_settings(
        storage_url=f"s3://{bucket}",
        s3_endpoint_url=bucket_endpoint.url,
        s3_access_key_id=nanio.access_key,
        s3_secret_access_key=nanio.secret_key,
    )
    served = await serve_app(await build_app(settings), api_port)
    yield served
    await served.runner.cleanup()


async def open_key_page(api: Any, sim: Any, conn: Conn, context: Any) -> tuple[Any, Any, Any]:
    order_id = await fulfilled_order(api, sim, conn, [{"productId": TEXT_PRODUCT_ID, "qty": 2}])
    token = await mint_order_token(api.app[RESOURCES].pool, order_id)
    page = await context.new_page()
    console = Console(page)
    await page.goto(f"{api.url}/orders/{order_id}/key#token={token}")
    assert await wait_state(page, "ready", "error", "failed") == "ready"
    return order_id, page, console


async def test_the_browser_downloads_each_ciphertext_from_the_bucket_cross_origin(
    api: Any, sim: Any, conn: Conn, context: Any, bucket_endpoint: Served
) -> None:
    order_id, page, console = await open_key_page(api, sim, conn, context)
    downloads: list[Any] = []
    page.on(
        "response",
        lambda r: downloads.append(r) if r.url.startswith(bucket_endpoint.url) else None,
    )
    await page.get_by_role("button", name="Reveal my keys").click()
    assert await wait_state(page, "revealed", "error") == "revealed", console.lines

    shown = {
        str(await item.get_attribute("data-key-id")): await item.locator(
            "code.key-text"
        ).inner_text()
        for item in await page.locator("#keys li.key").all()
    }
    issued = await issued_keys(sim.url, order_id)
    assert shown == {key_id: plain.decode() for key_id, (_, plain) in issued.items()}
    # Each key came from the bucket's endpoint (another origin than the page), through a
    # SigV4 presigned URL, with the CORS answer for the page's origin.
    assert len(downloads) == len(issued)
    for response in downloads:
        assert response.status == 200
        assert "X-Amz-Signature=" in response.url and "X-Amz-Expires=900" in response.url
        headers = await response.all_headers()
        assert headers["access-control-allow-origin"] == api.url
    assert console.lines == []


@pytest.mark.parametrize("rule_for", ["another site"])
async def test_without_a_cors_rule_for_the_page_the_browser_refuses_the_download(
    api: Any, sim: Any, conn: Conn, context: Any, rule_for: str
) -> None:
    _, page, console = await open_key_page(api, sim, conn, context)
    await page.get_by_role("button", name="Reveal my keys").click()
    assert await wait_state(page, "revealed", "error") == "error"
    assert "2 keys could not be shown" in await page.get_by_role("alert").inner_text()
    assert (await page.locator("#keys").inner_text()).count("network problem") == 2
    assert any("CORS" in line for line in console.lines), console.lines
