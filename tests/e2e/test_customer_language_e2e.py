"""Issue 19 end to end: a German and a Spanish customer, with real `serve`, `worker` and
simulator processes, a real SMTP server and headless Chromium. Each order's language is
chosen at POST /orders (Accept-Language; an explicit `locale` wins); every email it gets is
in that language and names the product, its platform, where the key works and how to
activate it (the sentences of `bitloot.i18n.products`, from the order's snapshot); the
emailed link opens the key page in that language, which shows the same facts, reveals the
key, and has no accessibility violation (axe-core)."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import aiohttp
import psycopg
import pytest
from axe_playwright_python.async_playwright import Axe
from browser_support import TIMEOUT_MS, chromium_browser  # noqa: F401 (the `browser` fixture)
from mail import SmtpSink, text_of
from stack import Stack, issued_serials

from bitloot.i18n.products import ProductFacts, ProductView, describe
from bitloot.sim.kinguin_catalog import MIXED_PRODUCT_ID, TEXT_PRODUCT_ID

LINK = re.compile(r"(https?://\S+/orders/([0-9a-f-]{36})/key\?lang=([a-z]{2})#token=[\w.-]+)")

# A phrase of each language's delivery email and key page that English does not have.
LANGUAGE_PROBES = {
    "de": ("Bestellung", "Deine"),
    "es": ("pedido", "Tu"),
}


def _snapshot(stack: Stack, order_id: str, locale: str) -> list[ProductView]:
    with psycopg.connect(stack.db_url) as conn:
        rows = conn.execute(
            """SELECT product_id, name, qty, platform, regional_limitations,
                      excluded_countries, image_url, is_preorder, release_date
                 FROM order_items WHERE order_id = %s ORDER BY product_id""",
            (order_id,),
        ).fetchall()
    return [
        describe(
            ProductFacts(
                product_id=r[0],
                name=r[1],
                qty=r[2],
                platform=r[3],
                regional_limitations=r[4],
                excluded_countries=tuple(r[5]),
                image_url=r[6],
                is_preorder=r[7],
                release_date=r[8],
            ),
            locale,
        )
        for r in rows
    ]


async def _eventually_mail(smtp: SmtpSink, order_id: str, kind: str) -> Any:
    deadline = time.monotonic() + 60
    while not smtp.for_order(order_id, kind=kind):
        assert time.monotonic() < deadline, f"no {kind} email for {order_id}"
        await asyncio.sleep(0.2)
    [message] = smtp.for_order(order_id, kind=kind)
    return message


@pytest.mark.parametrize(
    ("headers", "body_locale", "expected"),
    [
        ({"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}, None, "de"),
        ({"Accept-Language": "de-DE"}, "es", "es"),
    ],
    ids=["accept-language-de", "explicit-es-wins"],
)
async def test_a_customer_reads_everything_in_their_language(
    stack: Stack,
    smtp: SmtpSink,
    browser: Any,
    headers: dict[str, str],
    body_locale: str | None,
    expected: str,
) -> None:
    stack.extra_env["BITLOOT_SMTP_URL"] = smtp.url
    await stack.start_sim()
    await stack.start_api()
    stack.start_worker()
    items = [{"productId": MIXED_PRODUCT_ID, "qty": 1}, {"productId": TEXT_PRODUCT_ID, "qty": 1}]
    body: dict[str, Any] = {"email": "kunde@example.com", "items": items}
    if body_locale is not None:
        body["locale"] = body_locale
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{stack.api}/orders", json=body, headers=headers) as r:
            created = await r.json()
            assert r.status == 201, created
        oid = str(created["id"])
        auth = {"Authorization": f"Bearer {created['accessToken']}"}
        async with http.get(f"{stack.api}/orders/{oid}", headers=auth) as r:
            order = await r.json()
            assert r.status == 200, order
        assert order["locale"] == expected

        await stack.pay(http, oid)
        rows = await stack.wait_until([oid], timeout=90)
        assert rows[oid][:2] == ("fulfilled", "fulfilled"), rows
        serials = await issued_serials(stack, http, oid)
        assert len(serials) == 2

        views = _snapshot(stack, oid, expected)
        assert {v.platform_code for v in views} >= {"steam"}
        for kind in ("payment_received", "delivery"):
            message = await _eventually_mail(smtp, oid, kind)
            assert message["Content-Language"] == expected, kind
            text = text_of(message)
            html = message.get_body(preferencelist=("html",)).get_content()
            for serial in serials.values():
                assert serial.decode(errors="replace") not in text + html  # no key, ever
            for view in views:
                assert view.name in text, (kind, view.name)
                assert view.region in text, (kind, view.region)
            assert any(probe in text for probe in LANGUAGE_PROBES[expected]), text
        delivery = text_of(await _eventually_mail(smtp, oid, "delivery"))
        for view in views:
            assert view.steps[0] in delivery
            if view.redeem_url:
                assert view.redeem_url in delivery
        found = LINK.search(delivery)
        assert found is not None, delivery
        link, link_order, link_lang = found.groups()
        assert (link_order, link_lang) == (oid, expected)

    context = await browser.new_context(locale="en-US")  # the link's language wins
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = await context.new_page()
        await page.goto(link)
        await page.wait_for_selector('body[data-state="ready"]', state="attached")
        assert await page.evaluate("document.documentElement.lang") == expected
        shown = await page.locator("main").inner_text()
        for view in views:
            assert view.name in shown
            assert view.region in shown
            assert view.steps[0] in shown
        results = await Axe().run(page)
        assert results.violations_count == 0, results.generate_report()

        await page.locator("#reveal").click()
        await page.wait_for_selector('body[data-state="revealed"]', state="attached")
        # The GOG product may come as an image key (the simulator's mixed offer): each text
        # key is shown as issued, and every key has its place.
        assert await page.locator("#keys > li").count() == len(serials)
        for text in await page.locator("#keys .key-text").all_inner_texts():
            assert text.encode() in serials.values()
        results = await Axe().run(page)
        assert results.violations_count == 0, results.generate_report()
    finally:
        await context.close()
    await stack.wait_settled([oid])
