"""The app factory's middlewares over real HTTP: problem+json errors, request ids, the
access log (no query strings, no tokens) and the HTTP metrics."""

from __future__ import annotations

import io
import json
import logging
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from psycopg_pool import AsyncConnectionPool
from waiting import wait_until_sync

from bitloot import metrics
from bitloot.auth.tokens import TokenVerifier, mint_user_token
from bitloot.config import Settings, environ_without_bitloot
from bitloot.logs import configure_logging
from bitloot.processes import free_port
from bitloot.web.app import SETTINGS, create_app
from bitloot.web.auth import authenticate, require_admin
from bitloot.web.errors import PROBLEM_BASE, Conflict, TooManyRequests, UnprocessableEntity
from bitloot.web.middleware import add_log_fields

SECRET = "s" * 40
MAX_BODY = 1024

routes = web.RouteTableDef()
VERIFIER = web.AppKey("verifier", TokenVerifier)
# These routes see user JWTs only: order tokens (looked up in a database) are never sent.
NO_DATABASE: AsyncConnectionPool = AsyncConnectionPool("postgresql:///unused", open=False)


@routes.get("/orders/{id}")
async def get_order(request: web.Request) -> web.Response:
    return web.json_response({"id": request.match_info["id"]})


@routes.get("/conflict")
async def conflict(request: web.Request) -> web.Response:
    raise Conflict("The order is not fulfilled yet.")


@routes.get("/limited")
async def limited(request: web.Request) -> web.Response:
    raise TooManyRequests(retry_after=7.2)


@routes.get("/invalid")
async def invalid(request: web.Request) -> web.Response:
    raise UnprocessableEntity([{"loc": ["body", "email"], "msg": "not an email"}])


@routes.get("/boom")
async def boom(request: web.Request) -> web.Response:
    raise RuntimeError("secret-internal-detail")


@routes.post("/echo")
async def echo(request: web.Request) -> web.Response:
    return web.json_response(await request.json())


@routes.post("/noted")
async def noted(request: web.Request) -> web.Response:
    add_log_fields(request, outcome="order_paid", duplicate=False)
    return web.json_response({"ok": True})


@routes.get("/whoami")
async def whoami(request: web.Request) -> web.Response:
    principal = await authenticate(request, request.app[VERIFIER], NO_DATABASE)
    return web.json_response({"kind": principal.kind, "subject": principal.subject})


@routes.get("/admin-only")
async def admin_only(request: web.Request) -> web.Response:
    require_admin(await authenticate(request, request.app[VERIFIER], NO_DATABASE))
    return web.json_response({"ok": True})


def _settings() -> Settings:
    return Settings(
        _env_file=None,
        max_body_bytes=MAX_BODY,
        jwt_secret=SECRET,
        jwt_public_key=None,
        jwt_algorithm=None,
        jwt_issuer=None,
        jwt_audience=None,
    )


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """JSON logs into a buffer for one test; the previous configuration is restored."""
    saved_config = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging("json", stream=stream)
    yield stream
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    structlog.configure(**saved_config)


@pytest.fixture
async def client(
    log_stream: io.StringIO,
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    settings = _settings()

    async def add_verifier(app: web.Application) -> None:
        app[VERIFIER] = TokenVerifier(app[SETTINGS])

    app = create_app(settings=settings, route_tables=[routes], on_startup=[add_verifier])
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as test_client:
        yield test_client


def _events(stream: io.StringIO, name: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    return [line for line in lines if line.get("event") == name]


def _assert_problem(body: dict[str, Any], status: int, slug: str) -> None:
    assert body["type"] == PROBLEM_BASE + slug
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert re.fullmatch(r"[0-9a-f]{32}", body["requestId"])


async def test_unknown_route_is_a_404_problem(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/nowhere")
    assert resp.status == 404
    assert resp.content_type == "application/problem+json"
    body = await resp.json(content_type=None)
    _assert_problem(body, 404, "not-found")
    assert body["instance"] == "/nowhere"
    assert resp.headers["X-Request-Id"] == body["requestId"]


async def test_wrong_method_is_a_405_problem_with_allow(client: TestClient[Any, Any]) -> None:
    resp = await client.delete("/orders/abc")
    assert resp.status == 405
    assert resp.content_type == "application/problem+json"
    _assert_problem(await resp.json(content_type=None), 405, "method-not-allowed")
    assert "GET" in resp.headers["Allow"]


async def test_api_error_in_handler_becomes_its_problem(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/conflict")
    assert resp.status == 409
    body = await resp.json(content_type=None)
    _assert_problem(body, 409, "conflict")
    assert body["detail"] == "The order is not fulfilled yet."


async def test_rate_limit_problem_sets_retry_after(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/limited")
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "8"
    body = await resp.json(content_type=None)
    _assert_problem(body, 429, "too-many-requests")
    assert body["retryAfter"] == 8


async def test_validation_problem_lists_errors(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/invalid")
    assert resp.status == 422
    body = await resp.json(content_type=None)
    _assert_problem(body, 422, "validation-error")
    assert body["errors"] == [{"loc": ["body", "email"], "msg": "not an email"}]


async def test_unexpected_exception_is_a_bare_500(
    client: TestClient[Any, Any], log_stream: io.StringIO
) -> None:
    resp = await client.get("/boom")
    assert resp.status == 500
    text = await resp.text()
    assert "secret-internal-detail" not in text
    assert "RuntimeError" not in text
    assert "Traceback" not in text
    body = json.loads(text)
    _assert_problem(body, 500, "internal-error")
    # The server side keeps the details, tied to the same request id.
    (logged,) = _events(log_stream, "http.unhandled_error")
    assert "secret-internal-detail" in logged["exception"]
    assert logged["request_id"] == body["requestId"] == resp.headers["X-Request-Id"]


async def test_body_over_the_limit_is_a_413_problem(client: TestClient[Any, Any]) -> None:
    payload = json.dumps({"pad": "x" * (MAX_BODY * 2)})
    resp = await client.post("/echo", data=payload, headers={"Content-Type": "application/json"})
    assert resp.status == 413
    body = await resp.json(content_type=None)
    _assert_problem(body, 413, "payload-too-large")
    assert body["maxBytes"] == MAX_BODY


async def test_body_under_the_limit_is_read(client: TestClient[Any, Any]) -> None:
    resp = await client.post("/echo", json={"a": 1})
    assert resp.status == 200
    assert await resp.json() == {"a": 1}


async def test_sane_incoming_request_id_is_echoed(client: TestClient[Any, Any]) -> None:
    for path in ("/orders/1", "/nowhere", "/boom"):
        resp = await client.get(path, headers={"X-Request-Id": "edge-42.abc_DEF"})
        assert resp.headers["X-Request-Id"] == "edge-42.abc_DEF"


@pytest.mark.parametrize("incoming", ["a" * 65, "has space", "semi;colon", ""])
async def test_odd_incoming_request_id_is_replaced(
    client: TestClient[Any, Any], incoming: str
) -> None:
    resp = await client.get("/orders/1", headers={"X-Request-Id": incoming})
    assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["X-Request-Id"])


async def test_each_request_gets_its_own_id(client: TestClient[Any, Any]) -> None:
    ids = {(await client.get("/orders/1")).headers["X-Request-Id"] for _ in range(3)}
    assert len(ids) == 3


async def test_access_log_has_route_template_and_no_query_or_token(
    client: TestClient[Any, Any], log_stream: io.StringIO
) -> None:
    token = mint_user_token(_settings(), sub="user-1")
    resp = await client.get(
        "/orders/order-77?token=querysecret&access_token=" + token,
        headers={"Authorization": f"Bearer {token}", "X-Request-Id": "rid-1"},
    )
    assert resp.status == 200
    output = log_stream.getvalue()
    assert token not in output
    assert "querysecret" not in output
    assert "order-77" not in output
    assert "Bearer" not in output
    (line,) = _events(log_stream, "http.request")
    assert line["route"] == "/orders/{id}"
    assert line["method"] == "GET"
    assert line["status"] == 200
    assert line["request_id"] == "rid-1"
    assert line["remote"] == "127.0.0.1"
    assert isinstance(line["duration_ms"], float)


async def test_a_handler_adds_its_fields_to_the_one_request_line(
    client: TestClient[Any, Any], log_stream: io.StringIO
) -> None:
    resp = await client.post("/noted")
    assert resp.status == 200
    lines = [line for line in log_stream.getvalue().splitlines() if line.strip()]
    (line,) = _events(log_stream, "http.request")
    assert len(lines) == 1
    assert (line["route"], line["outcome"], line["duplicate"]) == ("/noted", "order_paid", False)


async def test_access_log_names_unmatched_routes(
    client: TestClient[Any, Any], log_stream: io.StringIO
) -> None:
    await client.get("/unknown/path-with-id-123?q=1")
    (line,) = _events(log_stream, "http.request")
    assert line["route"] == "unmatched"
    assert line["status"] == 404
    assert "path-with-id-123" not in log_stream.getvalue()


async def test_requests_are_counted_by_route_template(client: TestClient[Any, Any]) -> None:
    labels = {"method": "GET", "route": "/orders/{id}", "status": "200"}
    before = metrics.REGISTRY.get_sample_value("bitloot_http_requests_total", labels) or 0.0
    await client.get("/orders/1")
    await client.get("/orders/2")
    after = metrics.REGISTRY.get_sample_value("bitloot_http_requests_total", labels)
    assert after == before + 2
    count = metrics.REGISTRY.get_sample_value("bitloot_http_request_duration_seconds_count", labels)
    assert count is not None and count >= 2


async def test_missing_bearer_token_is_401_with_challenge(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/whoami")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    _assert_problem(await resp.json(content_type=None), 401, "unauthorized")


async def test_invalid_bearer_token_is_401_without_echo(client: TestClient[Any, Any]) -> None:
    bad = mint_user_token(_settings(), sub="u") + "x"
    resp = await client.get("/whoami", headers={"Authorization": f"Bearer {bad}"})
    assert resp.status == 401
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    assert bad not in await resp.text()


async def test_valid_bearer_token_names_the_principal(client: TestClient[Any, Any]) -> None:
    token = mint_user_token(_settings(), sub="user-9")
    resp = await client.get("/whoami", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200
    assert await resp.json() == {"kind": "user", "subject": "user-9"}


async def test_customer_on_admin_route_is_403(client: TestClient[Any, Any]) -> None:
    customer = mint_user_token(_settings(), sub="user-9")
    admin = mint_user_token(_settings(), sub="root", admin=True)
    resp = await client.get("/admin-only", headers={"Authorization": f"Bearer {customer}"})
    assert resp.status == 403
    _assert_problem(await resp.json(content_type=None), 403, "forbidden")
    resp = await client.get("/admin-only", headers={"Authorization": f"Bearer {admin}"})
    assert resp.status == 200


SERVE_SCRIPT = """
import asyncio, sys
from aiohttp import web
from bitloot.web.app import create_app, run_app
from bitloot.config import Settings, environ_without_bitloot
from bitloot.logs import configure_logging

configure_logging("json")
routes = web.RouteTableDef()
shutting_down = asyncio.Event()

@routes.get("/slow")
async def slow(request):
    open("in-handler", "w").close()  # the test sends SIGTERM once this exists
    # Still in flight when the shutdown begins (or a 500 after 10 s).
    await asyncio.wait_for(shutting_down.wait(), 10)
    return web.json_response({"done": True})

async def shutdown(app):
    shutting_down.set()

async def cleanup(app):
    print("cleanup-ran", flush=True)

app = create_app(settings=Settings(_env_file=None), route_tables=[routes], on_cleanup=[cleanup])
app.on_shutdown.append(shutdown)
run_app(app, "127.0.0.1", int(sys.argv[1]), shutdown_timeout=5)
"""


def test_run_app_drains_in_flight_requests_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE_SCRIPT, str(port)],
        cwd=tmp_path,
        env=environ_without_bitloot(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        listening = json.loads(proc.stderr.readline())
        assert listening["event"] == "http.listening"
        assert listening["url"] == f"http://127.0.0.1:{port}"

        result: dict[str, Any] = {}

        def call() -> None:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/slow", timeout=10) as resp:
                result["status"] = resp.status
                result["body"] = json.loads(resp.read())

        caller = threading.Thread(target=call)
        caller.start()
        wait_until_sync((tmp_path / "in-handler").exists, 10, "the request reaches the handler")
        proc.send_signal(signal.SIGTERM)
        caller.join(timeout=10)
        stdout, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert result == {"status": 200, "body": {"done": True}}
    assert proc.returncode == 0
    assert "cleanup-ran" in stdout
    events = [json.loads(line)["event"] for line in stderr.splitlines() if line.startswith("{")]
    assert "http.request" in events
    assert events[-1] == "http.stopped"
