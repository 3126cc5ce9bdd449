"""The key page in a real headless Chromium (Debian's `chromium`, driven by Playwright):
from the emailed link to the decrypted keys on screen.

Nothing is downloaded at run time: Playwright's Python wheel carries its driver and is
pointed at the system Chromium. Skipped, saying what to install, where either is missing.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from browser_support import TIMEOUT_MS, chromium_browser  # noqa: F401 (the `browser` fixture)
from harness import bare_order
from keypage_support import (
    access_events,
    create_order,
    fulfill,
    fulfilled_order,
    issued_keys,
    pay,
    seed_products,
    worker_runtime,
)

from bitloot.auth.order_tokens import mint_order_token
from bitloot.sim.kinguin_catalog import IMAGE_PRODUCT_ID, TEXT_PRODUCT_ID
from bitloot.web.context import RESOURCES

Conn = psycopg.AsyncConnection[Any]

# Where to keep the screenshot of the revealed page (for a person to look at), if set.
SCREENSHOT_DIR = os.environ.get("BITLOOT_TEST_SCREENSHOTS")


class Console:
    """Every console message and page error of one page (none may hold a key)."""

    def __init__(self, page: Any) -> None:
        self.lines: list[str] = []
        page.on("console", lambda msg: self.lines.append(f"console.{msg.type}: {msg.text}"))
        page.on("pageerror", lambda exc: self.lines.append(f"pageerror: {exc}"))


@pytest.fixture
async def context(browser: Any) -> AsyncIterator[Any]:
    ctx = await browser.new_context(
        permissions=["clipboard-read", "clipboard-write"], accept_downloads=True
    )
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    await ctx.close()


async def wait_state(page: Any, *states: str) -> str:
    selector = ", ".join(f'body[data-state="{s}"]' for s in states)
    await page.wait_for_selector(selector, state="attached")
    return str(await page.evaluate("document.body.dataset.state"))


async def test_reveal_text_and_image_keys(
    api: Any, sim: Any, conn: Conn, context: Any, tmp_path: Path
) -> None:
    order_id = await fulfilled_order(
        api,
        sim,
        conn,
        [{"productId": TEXT_PRODUCT_ID, "qty": 2}, {"productId": IMAGE_PRODUCT_ID, "qty": 1}],
    )
    issued = await issued_keys(sim.url, order_id)
    assert sorted(kind.split("/")[0] for kind, _ in issued.values()) == ["image", "text", "text"]
    token = await mint_order_token(api.app[RESOURCES].pool, order_id)

    page = await context.new_page()
    console = Console(page)
    await page.goto(f"{api.url}/orders/{order_id}/key#token={token}")

    # The status shows, the token has left the address bar, nothing was revealed or logged.
    assert await wait_state(page, "ready", "error", "failed") == "ready"
    assert "token" not in page.url and "#" not in page.url
    assert await page.evaluate("location.hash") == ""
    status = page.locator("#status")
    assert "fulfilled" in (await status.inner_text())
    assert await status.get_attribute("data-fulfillment-status") == "fulfilled"
    reveal = page.get_by_role("button", name="Reveal my keys")
    assert await reveal.is_enabled()
    assert await page.locator("#keys li").count() == 0
    # A reload (token no longer in the URL) still works: it is kept in this tab only.
    await page.reload()
    assert await wait_state(page, "ready", "error") == "ready"
    assert await access_events(conn, order_id) == {}

    await reveal.click()
    assert await wait_state(page, "revealed", "error") == "revealed"

    # Every text key, as the simulator issued it, in a <code> under its key id.
    shown: dict[str, str] = {}
    for item in await page.locator("#keys li.key").all():
        code = item.locator("code.key-text")
        if await code.count():
            shown[str(await item.get_attribute("data-key-id"))] = await code.inner_text()
    texts = {k: p.decode() for k, (kind, p) in issued.items() if kind == "text/plain"}
    assert shown == texts

    # The image key renders (decoded by the browser), and its Save button gives its bytes.
    (image_id,) = [k for k, (kind, _) in issued.items() if kind != "text/plain"]
    image_item = page.locator(f'#keys li.key[data-key-id="{image_id}"]')
    img = image_item.locator("img.key-image")
    await img.wait_for()
    assert await img.evaluate("i => i.complete && i.naturalWidth > 0 && i.src.startsWith('blob:')")
    async with page.expect_download() as download_info:
        # Named for the product it is a key of (not "key 3").
        await image_item.get_by_role("link", name=re.compile(r"^Save Minecraft")).click()
    download = await download_info.value
    assert Path(await download.path()).read_bytes() == issued[image_id][1]

    # Copy puts the key on the clipboard.
    first_id, first_text = next(iter(sorted(shown.items())))
    first_item = page.locator(f'#keys li.key[data-key-id="{first_id}"]')
    await first_item.get_by_role("button", name="Copy").click()
    # (Locators, not wait_for_function: the page's CSP rightly forbids the eval it uses.)
    await page.locator("#status", has_text="copied").wait_for()
    assert await page.evaluate("navigator.clipboard.readText()") == first_text

    # One access event per key: the Reveal, and nothing else.
    assert await access_events(conn, order_id) == dict.fromkeys(issued, 1)

    # No errors (a CSP violation would be one), and no key in the console or in storage.
    assert console.lines == []
    storage = await page.evaluate(
        "JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])"
    )
    for kind, plain in issued.values():
        secret = plain.decode() if kind == "text/plain" else base64.b64encode(plain).decode()
        assert secret not in storage
    assert str(token) not in await page.content()

    shot = tmp_path / "keypage-revealed.png"
    await page.screenshot(path=str(shot), full_page=True)
    if SCREENSHOT_DIR:
        Path(SCREENSHOT_DIR).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(SCREENSHOT_DIR) / shot.name)


async def test_page_polls_until_the_order_is_fulfilled(
    api: Any, sim: Any, conn: Conn, context: Any
) -> None:
    await seed_products(conn)
    order_id = await create_order(api.url, [{"productId": TEXT_PRODUCT_ID, "qty": 1}])
    token = await mint_order_token(api.app[RESOURCES].pool, order_id)
    page = await context.new_page()
    console = Console(page)
    await page.goto(f"{api.url}/orders/{order_id}/key#token={token}")
    assert await wait_state(page, "waiting", "ready", "error") == "waiting"
    assert "payment" in (await page.locator("#status").inner_text()).lower()
    assert not await page.get_by_role("button", name="Reveal my keys").is_enabled()

    await pay(conn, sim.url, order_id)
    async with worker_runtime(api.app, sim.url) as rt:
        await fulfill(rt, conn, order_id)
    # The page notices by itself (polling with backoff), and still reveals nothing.
    assert await wait_state(page, "ready", "error") == "ready"
    assert await page.get_by_role("button", name="Reveal my keys").is_enabled()
    assert await access_events(conn, order_id) == {}
    assert console.lines == []


@pytest.mark.parametrize("which", ["garbage", "another order's token", "no token"])
async def test_a_bad_link_shows_why(api: Any, conn: Conn, context: Any, which: str) -> None:
    order_id = uuid.uuid4()
    another = await bare_order(conn, "eve@example.com")
    fragment = {
        "garbage": "#token=eyJhbGciOiJub25lIn0.e30.",
        "another order's token": f"#token={await mint_order_token(conn, another)}",
        "no token": "",
    }[which]
    page = await context.new_page()
    await page.goto(f"{api.url}/orders/{order_id}/key{fragment}")
    assert await wait_state(page, "error", "ready", "waiting") == "error"
    error = await page.get_by_role("alert").inner_text()
    expected = {
        "garbage": "invalid or has expired",
        "another order's token": "could not find this order",
        "no token": "missing its access code",
    }[which]
    assert expected in error
    reveal = page.locator("#reveal")  # hidden, so not found by role
    assert await reveal.is_hidden()
    assert not await reveal.is_enabled()
    assert "token" not in page.url
