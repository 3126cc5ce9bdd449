"""The key page tells the customer, in their language, what they bought and what happens
next, and is accessible in every state: axe-core (axe-playwright-python, in the real
headless Chromium) finds nothing, and a keyboard alone reveals and copies a key.

Orders are put into each state directly in SQL (the state machines' legal paths, a
covering payment before `paid`); the ready and revealed states use real keys bought from
the Kinguin simulator by the worker's pipeline.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from axe_playwright_python.async_playwright import Axe
from browser_support import TIMEOUT_MS, chromium_browser  # noqa: F401 (the `browser` fixture)
from keypage_support import FACTS, sql_fulfilled_order, sql_order

from bitloot.auth.order_tokens import mint_order_token
from bitloot.i18n import gettext
from bitloot.sim.kinguin_catalog import IMAGE_PRODUCT_ID, TEXT_PRODUCT_ID

Conn = psycopg.AsyncConnection[Any]
AXE = Axe()
# Records every CSP violation of the page (run before the page's own script).
CSP_RECORDER = (
    "window.__cspViolations = [];"
    "document.addEventListener('securitypolicyviolation', (e) =>"
    " window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"
)


class Console:
    """Every console message and page error of one page (a CSP violation is one)."""

    def __init__(self, page: Any) -> None:
        self.lines: list[str] = []
        page.on("console", lambda msg: self.lines.append(f"console.{msg.type}: {msg.text}"))
        page.on("pageerror", lambda exc: self.lines.append(f"pageerror: {exc}"))


@pytest.fixture
async def context(browser: Any) -> AsyncIterator[Any]:
    ctx = await browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    await ctx.close()


async def no_violations(page: Any, state: str) -> None:
    """axe-core's WCAG 2.x A/AA rules and best practices: nothing to report."""
    results = await AXE.run(page)
    assert results.violations_count == 0, f"{state}:\n{results.generate_report()}"


async def open_key_page(
    page: Any, api: Any, order_id: uuid.UUID, token: str | None, lang: str | None = None
) -> None:
    query = f"?lang={lang}" if lang else ""
    fragment = f"#token={token}" if token else ""
    await page.goto(f"{api.url}/orders/{order_id}/key{query}{fragment}")


async def wait_phase(page: Any, phase: str) -> None:
    await page.wait_for_selector(f'body[data-phase="{phase}"]', state="attached")


# phase -> how the order gets there (sql_order's arguments) and words the status must say
# in English.
STATES: dict[str, tuple[dict[str, Any], str]] = {
    "waiting": ({"status": "waiting"}, "Waiting for your payment"),
    "confirming": ({"status": "confirming"}, "blockchain"),
    "buying": ({"status": "paid"}, "buying your keys"),
    "preorder": ({"status": "paid", "preorder": True}, "pre-order"),
    "underpaid": ({"status": "underpaid"}, "do not send the difference"),
    "refunded": ({"status": "refunded"}, "refunded"),
    "refunded-after-delivery": ({"status": "refunded-after-delivery"}, "refunded"),
    "expired": ({"status": "expired"}, "payment window closed"),
    "failed": ({"status": "failed"}, "payment failed"),
    "delivery-failed": ({"status": "paid", "delivery_failed": True}, "could not deliver"),
}


@pytest.mark.parametrize("phase", sorted(STATES))
async def test_each_order_status_in_words_with_what_was_bought(
    api: Any, conn: Conn, context: Any, phase: str
) -> None:
    how, words = STATES[phase]
    order_id = await sql_order(conn, items=[(TEXT_PRODUCT_ID, 2)], **how)
    token = await mint_order_token(conn, order_id)
    page = await context.new_page()
    console = Console(page)
    await open_key_page(page, api, order_id, token)
    await wait_phase(page, phase.removesuffix("-after-delivery"))

    assert words in await page.locator("#status").inner_text()
    # What was bought: the product, its platform, where it works, how to activate it, and
    # the platform's redeem page in a new tab (said to screen readers too).
    item = page.locator(f'#items li.item[data-product-id="{TEXT_PRODUCT_ID}"]')
    assert await item.get_by_role("heading", level=3).inner_text() == "Stardew Valley"
    text = await item.inner_text()
    assert "Platform: Steam" in text and "Quantity: 2" in text
    assert "Works in Europe." in text
    assert "Will not activate in: Norway, Switzerland." in text
    assert "Open Steam and sign in." in text
    link = item.get_by_role("link", name="Redeem on Steam (opens in a new tab)")
    assert await link.get_attribute("href") == "https://store.steampowered.com/account/registerkey"
    assert await link.get_attribute("target") == "_blank"
    assert await link.get_attribute("rel") == "noopener noreferrer"
    if phase == "preorder":
        assert "March 1, 2027" in text
    await no_violations(page, phase)
    assert console.lines == []


@pytest.mark.parametrize("lang", ["de", "es"])
@pytest.mark.parametrize("phase", ["waiting", "underpaid", "preorder"])
async def test_the_main_states_in_german_and_spanish(
    api: Any, conn: Conn, context: Any, lang: str, phase: str
) -> None:
    how, _ = STATES[phase]
    order_id = await sql_order(conn, locale=lang, **how)
    token = await mint_order_token(conn, order_id)
    page = await context.new_page()
    console = Console(page)
    await open_key_page(page, api, order_id, token, lang=lang)
    await wait_phase(page, phase)
    assert await page.get_attribute("html", "lang") == lang
    english = STATES[phase][1]
    assert english not in await page.locator("#status").inner_text()
    item = await page.locator("#items li.item").inner_text()
    assert gettext(lang, "Works in Europe.") in item
    assert gettext(lang, "Open Steam and sign in.") in item
    await no_violations(page, f"{phase} ({lang})")
    assert console.lines == []


@pytest.mark.parametrize("lang", ["en", "de", "es"])
async def test_ready_and_revealed_text_and_image_keys(
    api: Any, sim: Any, conn: Conn, context: Any, lang: str
) -> None:
    order_id = await sql_fulfilled_order(
        api, sim, conn, [(TEXT_PRODUCT_ID, 2), (IMAGE_PRODUCT_ID, 1)], locale=lang
    )
    token = await mint_order_token(conn, order_id)
    page = await context.new_page()
    console = Console(page)
    await page.add_init_script(CSP_RECORDER)
    await open_key_page(page, api, order_id, token, lang=lang)
    await wait_phase(page, "ready")
    await no_violations(page, f"ready ({lang})")
    # The messages block is data: the CSP lets the page read it and reports nothing.
    assert await page.locator("#reveal").inner_text() == gettext(lang, "Reveal my keys")

    await page.locator("#reveal").click()
    await page.wait_for_selector('body[data-state="revealed"]', state="attached")
    await page.locator("#keys img.key-image").wait_for()
    await no_violations(page, f"revealed ({lang})")

    # Each key is labelled with its product and platform, never "Key 1".
    labels = sorted(await page.locator("#keys .key-label").all_inner_texts())
    text_name = f"{FACTS[TEXT_PRODUCT_ID]['name']} (Steam)"
    image_name = f"{FACTS[IMAGE_PRODUCT_ID]['name']} (Xbox Series X|S)"
    of = {"en": "key {i} of 2", "de": "Key {i} von 2", "es": "clave {i} de 2"}[lang]
    assert labels[0].startswith(image_name)
    assert labels[1:] == [f"{text_name}, {of.format(i=i)}" for i in (1, 2)]
    if lang == "en":
        assert await page.get_by_role("button", name=f"Copy {text_name}, key 1 of 2").count()
    assert await page.evaluate("window.__cspViolations") == []
    assert console.lines == []


async def test_link_problems_and_the_recovery_form(api: Any, conn: Conn, context: Any) -> None:
    order_id = await sql_order(conn, status="waiting")
    other = await sql_order(conn, status="waiting")
    consoles = []

    async def fresh_page() -> Any:
        # A tab of its own: the page keeps a token in its tab's sessionStorage.
        page = await context.new_page()
        consoles.append(Console(page))
        return page

    # Not found: a working token of another order.
    page = await fresh_page()
    await open_key_page(page, api, order_id, await mint_order_token(conn, other))
    await wait_phase(page, "not-found")
    await no_violations(page, "not found")

    # Incomplete: no token at all.
    page = await fresh_page()
    await open_key_page(page, api, order_id, None)
    await wait_phase(page, "link-incomplete")
    await no_violations(page, "missing token")

    # 401: the recovery form, then what it says once sent.
    page = await fresh_page()
    await open_key_page(page, api, order_id, "eyJhbGciOiJub25lIn0.e30.")
    await wait_phase(page, "link-invalid")
    assert await page.locator("#recover-box").is_visible()
    await no_violations(page, "401 with recovery form")
    await page.get_by_label("Email address").fill("ada@example.com")
    await page.get_by_role("button", name="Email me new links").click()
    done = page.locator("#recover-done")
    await done.wait_for()
    assert "fresh links" in await done.inner_text()
    await no_violations(page, "recovery sent")
    # The browser logs the 404 and the 401 answers themselves; nothing else may show.
    lines = [line for console in consoles for line in console.lines]
    assert [line for line in lines if "Failed to load resource" not in line] == []


@pytest.mark.parametrize("lang", ["de", "es"])
async def test_link_problems_in_german_and_spanish(
    api: Any, conn: Conn, context: Any, lang: str
) -> None:
    order_id = await sql_order(conn, status="waiting", locale=lang)
    page = await context.new_page()
    await open_key_page(page, api, order_id, "eyJhbGciOiJub25lIn0.e30.", lang=lang)
    await wait_phase(page, "link-invalid")
    assert await page.get_attribute("html", "lang") == lang
    alert = await page.get_by_role("alert").inner_text()
    assert alert == gettext(
        lang,
        "This link is invalid or has expired. Enter your email address below and we will "
        "send you a new one.",
    )
    assert alert.startswith({"de": "Dieser Link", "es": "Este enlace"}[lang])
    await no_violations(page, f"401 ({lang})")


async def focused(page: Any) -> dict[str, str]:
    """The focused element: its id, tag, text and computed outline."""
    info: dict[str, str] = await page.evaluate(
        "(() => { const e = document.activeElement; const s = getComputedStyle(e);"
        " return { id: e.id, tag: e.tagName, text: e.textContent.trim(),"
        " outline: s.outlineStyle + ' ' + s.outlineWidth,"
        " visible: String(e.matches(':focus-visible')) }; })()"
    )
    return info


async def test_keyboard_only_reveal_and_copy(api: Any, sim: Any, conn: Conn, context: Any) -> None:
    order_id = await sql_fulfilled_order(api, sim, conn, [(TEXT_PRODUCT_ID, 1)])
    token = await mint_order_token(conn, order_id)
    page = await context.new_page()
    await open_key_page(page, api, order_id, token)
    await wait_phase(page, "ready")

    # Tab from the top: the language links, then Reveal; each focus is visible.
    seen = []
    for _ in range(10):
        await page.keyboard.press("Tab")
        now = await focused(page)
        assert now["visible"] == "true" and now["outline"] == "solid 3px", now
        seen.append(now["text"] if now["tag"] == "A" else now["id"])
        if now["id"] == "reveal":
            break
    assert seen == ["English", "Deutsch", "Español", "reveal"]

    await page.keyboard.press("Enter")
    await page.wait_for_selector('body[data-state="revealed"]', state="attached")
    # Focus moves to the keys; the key, then its Copy button, come next.
    assert (await focused(page))["id"] == "keys-heading"
    await page.keyboard.press("Tab")
    code = await focused(page)
    assert code["tag"] == "CODE" and code["visible"] == "true"
    await page.keyboard.press("Tab")
    copy = await focused(page)
    assert copy["tag"] == "BUTTON" and copy["text"] == "Copy" and copy["outline"] == "solid 3px"
    await page.keyboard.press("Space")
    await page.locator("#status", has_text="copied").wait_for()
    assert await page.evaluate("navigator.clipboard.readText()") == code["text"]


async def test_the_language_switch_keeps_the_token(
    api: Any, sim: Any, conn: Conn, context: Any
) -> None:
    order_id = await sql_fulfilled_order(api, sim, conn, [(TEXT_PRODUCT_ID, 1)])
    token = await mint_order_token(conn, order_id)
    page = await context.new_page()
    console = Console(page)
    await open_key_page(page, api, order_id, token)
    await wait_phase(page, "ready")
    english = page.get_by_role("navigation", name="Language")
    assert await english.get_by_role("link", name="English").get_attribute("aria-current")

    await english.get_by_role("link", name="Deutsch").click()
    await page.wait_for_url(f"{api.url}/orders/{order_id}/key?lang=de")
    await wait_phase(page, "ready")
    assert await page.get_attribute("html", "lang") == "de"
    assert "token" not in page.url
    item = await page.locator("#items li.item").inner_text()
    assert gettext("de", "Open Steam and sign in.") in item
    # The token came along in this tab's sessionStorage: Reveal works in German.
    await page.get_by_role("button", name=gettext("de", "Reveal my keys")).click()
    await page.wait_for_selector('body[data-state="revealed"]', state="attached")
    assert await page.locator("#keys code.key-text").count() == 1
    assert console.lines == []


@pytest.mark.parametrize("phase", ["underpaid", "link-invalid", "revealed"])
async def test_dark_colour_scheme(api: Any, sim: Any, conn: Conn, browser: Any, phase: str) -> None:
    context = await browser.new_context(color_scheme="dark")
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = await context.new_page()
        if phase == "revealed":
            order_id = await sql_fulfilled_order(api, sim, conn, [(TEXT_PRODUCT_ID, 1)])
            await open_key_page(page, api, order_id, await mint_order_token(conn, order_id))
            await wait_phase(page, "ready")
            await page.locator("#reveal").click()
            await page.wait_for_selector('body[data-state="revealed"]', state="attached")
        elif phase == "underpaid":
            order_id = await sql_order(conn, status="underpaid")
            await open_key_page(page, api, order_id, await mint_order_token(conn, order_id))
            await wait_phase(page, phase)
        else:
            await open_key_page(page, api, uuid.uuid4(), "eyJhbGciOiJub25lIn0.e30.")
            await wait_phase(page, phase)
        await no_violations(page, f"{phase} (dark)")
    finally:
        await context.close()
