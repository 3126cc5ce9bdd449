"""Build the aiohttp application (middlewares, routes, lifecycle hooks) and run it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import structlog
from aiohttp import web

from bitloot.config import Settings
from bitloot.web.middleware import (
    access_log_middleware,
    error_middleware,
    request_id_middleware,
    set_request_id_header,
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
    return app


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
