"""Build the aiohttp application (middlewares, routes, lifecycle hooks) and run it."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import structlog
from aiohttp import web, web_response
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.log import server_logger

from bitloot.config import Settings
from bitloot.web.middleware import (
    SERVER_NAME,
    access_log_middleware,
    error_middleware,
    request_id_middleware,
    set_request_id_header,
    set_security_headers,
)

log = structlog.get_logger(__name__)

SETTINGS = web.AppKey("settings", Settings)

AppHook = Callable[[web.Application], Awaitable[None]]
CleanupContext = Callable[[web.Application], AsyncIterator[None]]


def create_app(
    *,
    settings: Settings,
    route_tables: Sequence[web.RouteTableDef],
    on_startup: Sequence[AppHook] = (),
    on_cleanup: Sequence[AppHook] = (),
    cleanup_ctx: Sequence[CleanupContext] = (),
) -> web.Application:
    """An application with BitLoot's middlewares, `route_tables` and lifecycle hooks.

    `app[SETTINGS]` holds the settings; bodies over `settings.max_body_bytes` get a 413.
    """
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        # Outermost first: the id must exist before anything logs, and the access log
        # must see the status the error middleware settled on.
        middlewares=[request_id_middleware, access_log_middleware, error_middleware],
    )
    app[SETTINGS] = settings
    for table in route_tables:
        app.add_routes(table)
    app.on_startup.extend(on_startup)
    app.on_cleanup.extend(on_cleanup)
    app.cleanup_ctx.extend(cleanup_ctx)
    app.on_response_prepare.append(set_request_id_header)
    app.on_response_prepare.append(set_security_headers)
    _quiet_the_http_parser()
    return app


class MalformedRequestLog(logging.Filter):
    """On aiohttp's `aiohttp.server` logger: a request its HTTP parser refuses (a bad request
    line, a bad header, a line too long) is answered 400 by aiohttp before any application
    code runs, and logged with a full traceback, once per request. This turns that into one
    `http.malformed_request` warning without a traceback, at most one per `interval`
    seconds; the next one counts those `suppressed` in between. Anything else logged there
    (a real bug) passes unchanged."""

    def __init__(self, interval: float = 1.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self._interval = interval
        self._clock = clock
        self._next_at = -math.inf
        self._suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        now = self._clock()
        if now < self._next_at:
            self._suppressed += 1
            return False
        self._next_at = now + self._interval
        suppressed, self._suppressed = self._suppressed, 0
        # The parser's message may quote the request's bytes on later lines: first line only.
        reason = "".join(ch for ch in exc.message.partition("\n")[0] if ch.isprintable())
        log.warning(
            "http.malformed_request",
            error=type(exc).__name__,
            reason=reason[:120],
            remote=record.args[0] if isinstance(record.args, tuple) and record.args else None,
            suppressed=suppressed,
        )
        return False


def _quiet_the_http_parser() -> None:
    if not any(isinstance(f, MalformedRequestLog) for f in server_logger.filters):
        server_logger.addFilter(MalformedRequestLog())
    # The hook names the server on the application's answers; aiohttp's own (the parser's
    # 400s) take this module default, "Python/3.x aiohttp/3.x" otherwise. It is not part of
    # aiohttp's API: tests/api/test_http_hardening.py fails if it stops working.
    setattr(web_response, "SERVER_SOFTWARE", SERVER_NAME)  # noqa: B010


def run_app(
    app: web.Application | Awaitable[web.Application],
    host: str,
    port: int,
    *,
    shutdown_timeout: float = 30,
) -> None:
    """Serve `app` until SIGTERM or SIGINT, then drain in-flight requests for up to
    `shutdown_timeout` seconds and run the cleanup hooks."""
    url = f"http://{_url_host(host)}:{port}"

    def _listening(_banner: str) -> None:
        # aiohttp calls `print` only once every socket is bound, so this line is true
        # when it appears (a line logged before run_app would precede a bind failure).
        log.info("http.listening", url=url)

    web.run_app(
        app,
        host=host,
        port=port,
        shutdown_timeout=shutdown_timeout,
        handle_signals=True,
        access_log=None,  # access_log_middleware logs each request, without query strings
        print=_listening,
    )
    log.info("http.stopped", url=url)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
