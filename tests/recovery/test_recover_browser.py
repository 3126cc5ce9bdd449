"""The key page in a real headless Chromium (set up as in tests/keypage): a link whose token
expired or was revoked offers a new one, and the form posts the address and says the same
thing whatever the address."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from browser_support import TIMEOUT_MS, chromium_browser  # noqa: F401 (the `browser` fixture)
from recovery_support import Conn, fulfilled_order, requests_audit, served_api

from bitloot.auth.order_tokens import mint_order_token
from bitloot.config import Settings
from bitloot.vault.crypto import MasterKeyRing
from bitloot.web.context import RESOURCES

NO_LIMITS = {
    "rate_limit_recover_per_email_per_hour": 0,
    "rate_limit_recover_per_address_per_hour": 0,
}


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    ctx = await browser.new_context()
    ctx.set_default_timeout(TIMEOUT_MS)
    yield await ctx.new_page()
    await ctx.close()


class Console:
    """Every console message and page error of one page (a CSP violation is one)."""

    def __init__(self, page: Any) -> None:
        self.lines: list[str] = []
        page.on("console", lambda msg: self.lines.append(f"console.{msg.type}: {msg.text}"))
        page.on("pageerror", lambda exc: self.lines.append(f"pageerror: {exc}"))


async def wait_state(page: Any, *states: str) -> str:
    selector = ", ".join(f'body[data-state="{s}"]' for s in states)
    await page.wait_for_selector(selector, state="attached")
    return str(await page.evaluate("document.body.dataset.state"))


async def expired_token(pool: Any, order_id: Any) -> str:
    token = await mint_order_token(pool, order_id, purpose="email", ttl_seconds=1)
    await asyncio.sleep(1.2)
    return token


async def revoked_token(pool: Any, order_id: Any) -> str:
    token = await mint_order_token(pool, order_id, purpose="email")
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE order_access_tokens SET revoked_at = now(), revoked_reason = 'test'"
            " WHERE order_id = %s",
            (order_id,),
        )
    return token


@pytest.mark.parametrize("link", ["expired", "revoked"])
async def test_a_dead_link_offers_a_new_one(
    make_settings: Callable[..., Settings],
    api_port: int,
    conn: Conn,
    ring: MasterKeyRing,
    page: Any,
    link: str,
) -> None:
    async with served_api(make_settings, api_port, **NO_LIMITS) as api:
        pool = api.app[RESOURCES].pool
        order_id = await fulfilled_order(conn, ring, "ada@example.com")
        token = await (expired_token if link == "expired" else revoked_token)(pool, order_id)
        console = Console(page)
        await page.goto(f"{api.url}/orders/{order_id}/key#token={token}")

        assert await wait_state(page, "error", "ready", "waiting") == "error"
        assert "invalid or has expired" in await page.get_by_role("alert").first.inner_text()
        assert await page.locator("#reveal").is_hidden()
        heading = page.get_by_role("heading", name="Get a new link")
        assert await heading.is_visible()
        field = page.get_by_label("Email address")
        assert await field.is_visible()
        assert await field.get_attribute("type") == "email"
        assert await field.get_attribute("autocomplete") == "email"
        send = page.get_by_role("button", name="Email me new links")
        # The form fits the card: nothing sticks out sideways (no layout break).
        assert await page.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )

        # An invalid address never leaves the page: the browser's own validation says why.
        await field.fill("not an address")
        await send.click()
        assert await field.evaluate("f => !f.validity.valid")
        assert await requests_audit(conn) == []

        # Keyboard only: the field, then Enter.
        await field.focus()
        await field.fill("Ada@Example.com")
        await page.keyboard.press("Enter")
        done = page.locator("#recover-done")
        await done.wait_for(state="visible")
        assert "on its way" in await done.inner_text()
        assert await done.get_attribute("role") == "status"
        assert await done.evaluate("d => d === document.activeElement")
        assert await page.locator("#recover-form").is_hidden()
        assert await requests_audit(conn) == [("ada@example.com", "127.0.0.1", "sent", 1)]
        assert console.lines == [
            line for line in console.lines if "401" in line
        ]  # the refused status call, and nothing else (no CSP violation)


async def test_an_unknown_address_sees_the_same_confirmation(
    make_settings: Callable[..., Settings],
    api_port: int,
    conn: Conn,
    ring: MasterKeyRing,
    page: Any,
) -> None:
    async with served_api(make_settings, api_port, **NO_LIMITS) as api:
        order_id = await fulfilled_order(conn, ring, "ada@example.com")
        token = await revoked_token(api.app[RESOURCES].pool, order_id)
        texts = []
        for email in ("ada@example.com", "nobody@example.com"):
            tab = await page.context.new_page()  # a fresh load each time
            await tab.goto(f"{api.url}/orders/{order_id}/key#token={token}")
            assert await wait_state(tab, "error", "ready") == "error"
            await tab.get_by_label("Email address").fill(email)
            await tab.get_by_role("button", name="Email me new links").click()
            done = tab.locator("#recover-done")
            await done.wait_for(state="visible")
            texts.append(await done.inner_text())
    assert texts[0] == texts[1]
    assert [row[2] for row in await requests_audit(conn)] == ["sent", "no_orders"]


async def test_past_the_client_limit_the_form_says_when_to_retry(
    make_settings: Callable[..., Settings],
    api_port: int,
    conn: Conn,
    ring: MasterKeyRing,
    page: Any,
    http: aiohttp.ClientSession,
) -> None:
    async with served_api(
        make_settings,
        api_port,
        rate_limit_recover_per_address_per_hour=1,
        rate_limit_recover_per_email_per_hour=0,
    ) as api:
        order_id = await fulfilled_order(conn, ring, "ada@example.com")
        token = await revoked_token(api.app[RESOURCES].pool, order_id)
        async with http.post(f"{api.url}/orders/recover", json={"email": "x@example.com"}) as r:
            assert r.status == 202
        await page.goto(f"{api.url}/orders/{order_id}/key#token={token}")
        assert await wait_state(page, "error", "ready") == "error"
        await page.get_by_label("Email address").fill("ada@example.com")
        await page.get_by_role("button", name="Email me new links").click()
        error = page.locator("#recover-error")
        await error.wait_for(state="visible")
        assert "try again in 60 minutes" in await error.inner_text()
        assert await page.locator("#recover-form").is_visible()
