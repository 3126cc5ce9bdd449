"""Headers every answer carries (`nosniff`, a `Server` without versions, `no-store` for any
request with credentials), and requests the HTTP parser refuses: one warning line each,
without a traceback, at most one per second."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from harness import Served
from structlog.testing import capture_logs

from bitloot.web.app import MalformedRequestLog

PRODUCT = "5c9b5f6b2539a4e8f172916a"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def raw_exchange(url: str, request: bytes) -> bytes:
    """Send `request` bytes as they are; what the server answers before it closes."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), timeout=10)
    finally:
        writer.close()


def header_lines(raw: bytes) -> dict[str, str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head)}


MALFORMED = [
    b"GET / HTTP/1.1\r\nHost: x\r\nno colon in this header\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"GET / HTTP/9.9.9\r\nHost: x\r\n\r\n",
]


async def test_every_answer_says_nosniff_and_no_version(
    api: Served, http: aiohttp.ClientSession
) -> None:
    for method, path, kwargs in [
        ("GET", "/healthz", {}),
        ("HEAD", "/healthz", {}),
        ("GET", "/no/such/route", {}),
        ("DELETE", "/orders", {}),
        ("POST", "/orders", {"data": b"{not json"}),
        ("GET", "/static/keypage.js", {}),
        ("GET", "/openapi.json", {}),
        ("GET", "/orders", {"headers": {"Authorization": "Bearer nonsense"}}),
    ]:
        async with http.request(method, f"{api.url}{path}", **kwargs) as resp:
            assert resp.headers.get("X-Content-Type-Options") == "nosniff", (method, path)
            assert resp.headers.get("Server") == "BitLoot", (method, path, resp.headers)
    # Answers aiohttp's HTTP parser makes before the application runs.
    for request in MALFORMED:
        answer = await raw_exchange(api.url, request)
        assert re.match(rb"HTTP/1\.[01] 4\d\d ", answer), answer[:80]
        server = header_lines(answer).get("server", "")
        assert "aiohttp" not in server and "Python" not in server, server


async def test_authenticated_answers_are_never_stored(
    api: Served, http: aiohttp.ClientSession, conn: Any
) -> None:
    await conn.execute(
        "INSERT INTO products (product_id, name, price, currency, max_cost)"
        " VALUES (%s, 'Game', 14.99, 'eur', 12)",
        (PRODUCT,),
    )
    body = {"email": "ada@example.com", "items": [{"productId": PRODUCT, "qty": 1}]}
    async with http.post(f"{api.url}/orders", json=body) as resp:
        created = await resp.json()
        assert resp.status == 201, created
    bearer = {"Authorization": f"Bearer {created['accessToken']}"}
    for path in (
        f"/orders/{created['id']}",
        f"/fulfillment/{created['id']}/status",
        f"/orders/{created['id']}/key",
    ):
        async with http.get(f"{api.url}{path}", headers=bearer) as resp:
            assert resp.status == 200, path
            assert resp.headers.get("Cache-Control") == "no-store", path
    async with http.get(f"{api.url}/static/keypage.js", headers=bearer) as resp:
        assert resp.headers.get("Cache-Control") == "no-store"
    # Without credentials, a route's own caching stays as it was.
    async with http.get(f"{api.url}/static/keypage.js") as resp:
        assert resp.headers.get("Cache-Control") != "no-store"


async def test_malformed_requests_are_one_warning_without_traceback(
    api: Served, caplog: pytest.LogCaptureFixture
) -> None:
    await asyncio.sleep(1.1)  # past any earlier test's window
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")
    with capture_logs() as logs:
        for request in MALFORMED * 5:
            answer = await raw_exchange(api.url, request)
            assert re.match(rb"HTTP/1\.[01] 4\d\d ", answer), answer[:80]
    warnings = [e for e in logs if e["event"] == "http.malformed_request"]
    assert len(warnings) == 1, logs  # twenty in well under a second
    (warning,) = warnings
    assert warning["log_level"] == "warning"
    assert isinstance(warning["suppressed"], int)  # those of an earlier test, if any
    assert warning["remote"] == "127.0.0.1"
    assert "\n" not in warning["reason"] and "aaaa" not in warning["reason"]
    # aiohttp's own record (with its traceback) never reaches a handler.
    assert [r for r in caplog.records if r.name == "aiohttp.server"] == []

    await asyncio.sleep(1.1)
    with capture_logs() as logs:
        await raw_exchange(api.url, MALFORMED[0])
    (warning,) = [e for e in logs if e["event"] == "http.malformed_request"]
    assert warning["suppressed"] == 19


def _record(exc: BaseException | None, level: int = logging.ERROR) -> logging.LogRecord:
    info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord(
        "aiohttp.server", level, __file__, 1, "Error handling request from %s", ("1.2.3.4",), info
    )


def test_the_log_filter_samples_one_per_interval_and_counts_the_rest() -> None:
    from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

    now = [100.0]
    log_filter = MalformedRequestLog(interval=1.0, clock=lambda: now[0])
    with capture_logs() as logs:
        assert log_filter.filter(_record(BadHttpMessage("Bad header\n  b'secret'\n  ^"))) is False
        for _ in range(500):
            now[0] += 0.001
            assert log_filter.filter(_record(LineTooLong("header", 8190, 9000))) is False
        now[0] += 1.0
        assert log_filter.filter(_record(BadHttpMessage("again"))) is False
    assert [(e["error"], e["reason"], e["suppressed"]) for e in logs] == [
        ("BadHttpMessage", "Bad header", 0),
        ("BadHttpMessage", "again", 500),
    ]
    # Anything else aiohttp logs there (a bug in a handler) passes untouched.
    assert log_filter.filter(_record(RuntimeError("boom"))) is True
    assert log_filter.filter(_record(None, logging.INFO)) is True
