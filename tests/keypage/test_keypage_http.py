"""The key page over HTTP: headers, markup without inline code, and that GET and HEAD
change nothing at all (mail scanners prefetch links)."""

from __future__ import annotations

import json
import uuid
from html.parser import HTMLParser
from typing import Any

import aiohttp
import psycopg
import pytest
from keypage_support import access_events, fulfilled_order
from waiting import wait_until

from bitloot.auth.order_tokens import mint_order_token
from bitloot.config import load_settings
from bitloot.i18n import gettext
from bitloot.keypage.routes import content_security_policy, storage_origins
from bitloot.sim.kinguin_catalog import TEXT_PRODUCT_ID
from bitloot.web.context import RESOURCES

Conn = psycopg.AsyncConnection[Any]


def expected_csp(connect: str) -> str:
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        f"connect-src {connect}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


class Markup(HTMLParser):
    """Every start tag with its attributes, the text inside <script> and <style> (code),
    and the JSON data blocks (`<script type="application/json">`: data the browser never
    runs, so no CSP applies to them)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline_code: list[str] = []
        self.data_blocks: dict[str, str] = {}
        self._open: str | None = None
        self._data_id: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.append((tag, found))
        self._open = tag if tag in ("script", "style") else None
        self._data_id = None
        if tag == "script" and found.get("type") == "application/json":
            self._data_id = found.get("id") or ""
            self._open = None

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        self._open = None
        self._data_id = None

    def handle_data(self, data: str) -> None:
        if self._data_id is not None:
            self.data_blocks[self._data_id] = self.data_blocks.get(self._data_id, "") + data
        elif self._open and data.strip():
            self.inline_code.append(f"<{self._open}>{data.strip()[:40]}")


async def table_digests(conn: Conn) -> dict[str, str]:
    """A digest of every row of every table: equal digests, nothing changed."""
    cur = await conn.execute(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1"
    )
    names = [row[0] for row in await cur.fetchall()]
    out = {}
    for name in names:
        cur = await conn.execute(
            f"SELECT count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), ''))"
            f' FROM "{name}" t'
        )
        row = await cur.fetchone()
        assert row is not None
        out[name] = f"{row[0]}:{row[1]}"
    return out


# How a webhook's delivery ends in the Kinguin simulator's log (anything else is under way).
FINAL_OUTCOMES = ("delivered", "gave_up", "dropped", "no_url")


async def settled_digests(
    conn: Conn, sim_url: str, order_id: uuid.UUID, timeout: float = 30
) -> dict[str, str]:
    """The digests once no late webhook is still changing anything. The NOWPayments IPNs
    were all sent before the payment was made; the Kinguin simulator reports the order's
    completion after the fact: wait until it has delivered that webhook, and BitLoot has
    applied every webhook it stored."""
    async with aiohttp.ClientSession() as http:

        async def completion_webhook_sent() -> bool:
            async with http.get(f"{sim_url}/kinguin/sim/webhooks") as r:
                deliveries = (await r.json())["deliveries"]
            return any(
                d["orderExternalId"] == str(order_id)
                and d["status"] == "completed"
                and d["outcome"] in FINAL_OUTCOMES
                for d in deliveries
            )

        await wait_until(completion_webhook_sent, timeout, "the completion webhook delivered")

    async def webhooks_applied() -> bool:
        cur = await conn.execute("SELECT count(*) FROM webhook_events WHERE processed_at IS NULL")
        row = await cur.fetchone()
        return row is not None and row[0] == 0

    await wait_until(webhooks_applied, timeout, "every stored webhook applied")
    return await table_digests(conn)


async def test_page_headers_markup_and_no_side_effects(api: Any, sim: Any, conn: Conn) -> None:
    order_id = await fulfilled_order(api, sim, conn, [{"productId": TEXT_PRODUCT_ID, "qty": 1}])
    token = await mint_order_token(api.app[RESOURCES].pool, order_id)
    before = await settled_digests(conn, sim.url, order_id)
    page_url = f"{api.url}/orders/{order_id}/key"

    async with aiohttp.ClientSession() as http:
        bodies = []
        for method in ("GET", "HEAD", "GET", "HEAD"):
            # A client that sends the token anyway (it never should: it is in the fragment)
            # changes nothing either.
            headers = {"Authorization": f"Bearer {token}"} if len(bodies) >= 2 else {}
            async with http.request(method, page_url, headers=headers) as r:
                assert r.status == 200, (method, r.status)
                assert r.content_type == "text/html"
                assert r.charset == "utf-8"
                assert r.headers["Content-Security-Policy"] == expected_csp(f"'self' {api.url}")
                assert r.headers["Referrer-Policy"] == "no-referrer"
                assert r.headers["X-Content-Type-Options"] == "nosniff"
                assert r.headers["Cache-Control"] == "no-store"
                assert r.headers["X-Frame-Options"] == "DENY"
                body = await r.read()
                if method == "HEAD":
                    assert body == b""
                    assert int(r.headers["Content-Length"]) > 0
                bodies.append(body)
        html = bodies[0].decode()
        assert bodies[2] == bodies[0]
        assert str(order_id) not in html  # one static page for every order

        markup = Markup()
        markup.feed(html)
        assert markup.inline_code == []
        # The script's words, translated on the server: data, not code.
        assert list(markup.data_blocks) == ["messages"]
        messages = json.loads(markup.data_blocks["messages"])
        assert messages["waiting"].startswith("Waiting for your payment")
        scripts = [
            attrs
            for tag, attrs in markup.tags
            if tag == "script" and attrs.get("type") != "application/json"
        ]
        assert len(scripts) == 1
        assert scripts[0]["src"] is not None
        assert scripts[0]["src"].startswith("/static/keypage.js?v=")
        assert not [tag for tag, _ in markup.tags if tag == "style"]
        for tag, attrs in markup.tags:
            assert "style" not in attrs, tag
            assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
            for name in ("src", "href"):
                value = attrs.get(name)
                # Only this server's own files (and the empty data: favicon), and the
                # language switch: this page in another language.
                assert (
                    value is None
                    or value.startswith("/")
                    or value == "data:,"
                    or value in ("?lang=en", "?lang=de", "?lang=es")
                ), value
        buttons = {a.get("id"): a for tag, a in markup.tags if tag == "button"}
        assert buttons["reveal"]["type"] == "button"
        assert "disabled" in buttons["reveal"]  # until the status says fulfilled
        assert any(a.get("role") == "status" and a.get("aria-live") for _, a in markup.tags)
        assert any(tag == "html" and a.get("lang") == "en" for tag, a in markup.tags)

        # The assets: right types, nosniff, cached for a year under their content hash.
        stylesheet = next(
            a["href"] for t, a in markup.tags if t == "link" and a.get("rel") == "stylesheet"
        )
        for url, kind in ((scripts[0]["src"], "text/javascript"), (stylesheet, "text/css")):
            assert url is not None
            async with http.get(api.url + url) as r:
                assert r.status == 200
                assert r.content_type == kind
                assert r.headers["X-Content-Type-Options"] == "nosniff"
                assert "immutable" in r.headers["Cache-Control"]
                etag = r.headers["ETag"]
                assert len(await r.read()) > 100
            async with http.get(api.url + url.split("?")[0]) as r:
                assert r.headers["Cache-Control"] == "no-cache"
            async with http.get(api.url + url, headers={"If-None-Match": etag}) as r:
                assert r.status == 304

    assert await table_digests(conn) == before
    assert await access_events(conn, order_id) == {}


async def test_any_order_id_gets_the_page_and_a_malformed_one_a_404(api: Any) -> None:
    async with aiohttp.ClientSession() as http:
        for order_id in (uuid.uuid4(), str(uuid.uuid4()).upper()):
            async with http.get(f"{api.url}/orders/{order_id}/key") as r:
                assert r.status == 200
        for bad in ("not-a-uuid", "1234", f"{uuid.uuid4()}x", "..%2F..%2Fetc"):
            async with http.get(f"{api.url}/orders/{bad}/key") as r:
                assert r.status == 404
                assert r.content_type == "application/problem+json"
        async with http.post(f"{api.url}/orders/{uuid.uuid4()}/key") as r:
            assert r.status == 405


@pytest.mark.parametrize(
    ("env", "connect"),
    [
        ({}, "'self' http://127.0.0.1:8080"),
        (
            {"storage_url": "file:///srv/objects", "public_url": "https://keys.example.com/"},
            "'self' https://keys.example.com",
        ),
        (
            {
                "storage_url": "s3://bitloot-keys",
                "s3_endpoint_url": "https://0123abcd.r2.cloudflarestorage.com/",
            },
            "'self' https://0123abcd.r2.cloudflarestorage.com",
        ),
        (
            {"storage_url": "s3://bitloot-keys", "s3_endpoint_url": "http://user:pw@[::1]:9000"},
            "'self' http://[::1]:9000",
        ),
        ({"storage_url": "s3://bitloot-keys"}, "'self' https://*.amazonaws.com"),
        # Whatever ends up in the setting, nothing can break out of the header.
        (
            {"storage_url": "s3://b-k", "s3_endpoint_url": "https://x.com;script-src *"},
            "'self'",
        ),
    ],
)
def test_connect_src_names_the_object_store(env: dict[str, str], connect: str) -> None:
    settings = load_settings(**env)
    assert content_security_policy(settings) == expected_csp(connect)
    assert all(";" not in o and " " not in o for o in storage_origins(settings))


@pytest.mark.parametrize(
    ("query", "accept_language", "locale"),
    [
        ("", None, "en"),
        ("", "de-AT,de;q=0.9,en;q=0.5", "de"),
        ("", "fr-FR, es;q=0.8", "es"),
        ("?lang=de", "es", "de"),  # the emailed link's language wins over the browser's
        ("?lang=es-MX", None, "es"),
        ("?lang=fr", "de", "de"),  # one we do not speak: the browser's
        ("?lang=%00%FF", None, "en"),
        ("?lang=" + "x" * 300, None, "en"),
    ],
)
async def test_the_page_is_in_the_customers_language(
    api: Any, query: str, accept_language: str | None, locale: str
) -> None:
    headers = {"Accept-Language": accept_language} if accept_language else {}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{api.url}/orders/{uuid.uuid4()}/key{query}", headers=headers) as r,
    ):
        assert r.status == 200
        html = await r.text()
        assert r.headers["Content-Language"] == locale
        assert r.headers["Vary"] == "Accept-Language"
        # Every security header, whatever the language.
        assert r.headers["Content-Security-Policy"] == expected_csp(f"'self' {api.url}")
        assert r.headers["Cache-Control"] == "no-store"
        assert r.headers["X-Frame-Options"] == "DENY"
        assert r.headers["Referrer-Policy"] == "no-referrer"
    markup = Markup()
    markup.feed(html)
    assert any(tag == "html" and a.get("lang") == locale for tag, a in markup.tags)
    messages = json.loads(markup.data_blocks["messages"])
    refunded = "This order was refunded, so its keys are no longer available."
    assert messages["refunded"] == gettext(locale, refunded)
    # Plurals as [one, other], each with its number.
    assert len(messages["retryingIn"]) == 2 and all("{n}" in f for f in messages["retryingIn"])
    # The language switch: a link per language, the current one marked.
    switch = [
        a for tag, a in markup.tags if tag == "a" and (a.get("href") or "").startswith("?lang=")
    ]
    assert [a["hreflang"] for a in switch] == ["en", "de", "es"]
    assert [a["hreflang"] for a in switch if a.get("aria-current") == "page"] == [locale]
    # The asset URLs carry their content hash in every language.
    assert "/static/keypage.js?v=" in html and "/static/keypage.css?v=" in html
