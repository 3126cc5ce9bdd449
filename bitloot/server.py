"""`bitloot serve`: the HTTP API, assembled from every domain's routes over one `Resources`."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import structlog
from aiohttp import web

from bitloot.admin.routes import routes as admin_routes
from bitloot.admin.webhook_routes import routes as webhook_endpoint_routes
from bitloot.catalog.routes import routes as catalog_routes
from bitloot.catalog.service import reader_client
from bitloot.config import Settings, check_webhook_secrets
from bitloot.fulfillment.kinguin_routes import routes as kinguin_routes
from bitloot.fulfillment.routes import routes as fulfillment_routes
from bitloot.health import metrics_routes
from bitloot.health import routes as health_routes
from bitloot.keypage.routes import routes as keypage_routes
from bitloot.logs import configure_logging
from bitloot.openapi import routes as openapi_routes
from bitloot.orders.routes import routes as order_routes
from bitloot.payments.routes import routes as payment_routes
from bitloot.recovery.routes import routes as recovery_routes
from bitloot.resources import Resources, open_resources
from bitloot.storage.local import LocalObjectStorage, local_objects_routes
from bitloot.web.app import create_app, run_app
from bitloot.web.context import RESOURCES

log = structlog.get_logger(__name__)

REQUIRED_FOR_SERVE = ("nowpayments_api_key", "nowpayments_ipn_secret", "kinguin_webhook_secret")


def route_tables(settings: Settings) -> list[web.RouteTableDef]:
    """Every route table of the API (metrics only when they are public)."""
    tables = [
        health_routes,
        order_routes,
        catalog_routes,
        payment_routes,
        kinguin_routes,
        fulfillment_routes,
        keypage_routes,
        recovery_routes,
        admin_routes,
        webhook_endpoint_routes,
        openapi_routes,
    ]
    if settings.metrics_public:
        tables.append(metrics_routes)
    return tables


async def build_app(settings: Settings) -> web.Application:
    """Open everything the API needs and return the application that will close it."""
    check_webhook_secrets(settings)
    stack = AsyncExitStack()
    try:
        # Handlers hold a connection only for their transaction; the default 20 keeps 32+
        # concurrent webhook requests from queueing for one (measured with `bitloot bench
        # ipn`). No queue_app.open_async here: the API only defers jobs on its own
        # connections (configure(connection=conn)), which needs no procrastinate pool.
        res = await open_resources(settings, stack, pool_size=settings.api_pool_size)
        log.info("serve.started", pool_size=settings.api_pool_size,
                 pooler=settings.database_pooler)  # fmt: skip
        # POST /orders reads stock and price from Kinguin (a short timeout, one retry).
        kinguin = reader_client(settings)
        if kinguin is not None:
            res.kinguin = await stack.enter_async_context(kinguin)
        if not settings.metrics_public and settings.metrics_port:
            await _serve_metrics_locally(settings.metrics_port, stack, res)
    except BaseException:
        await stack.aclose()
        raise

    async def close_everything(_app: web.Application) -> AsyncIterator[None]:
        yield
        await stack.aclose()

    app = create_app(
        settings=settings, route_tables=route_tables(settings), cleanup_ctx=[close_everything]
    )
    app[RESOURCES] = res
    if isinstance(res.storage, LocalObjectStorage):
        app.add_routes(local_objects_routes(res.storage))
    return app


async def _serve_metrics_locally(port: int, stack: AsyncExitStack, res: Resources) -> None:
    metrics_app = web.Application()
    metrics_app[RESOURCES] = res
    metrics_app.add_routes(metrics_routes)
    runner = web.AppRunner(metrics_app, access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        log.info("metrics.listening", url=f"http://127.0.0.1:{port}/metrics")
    except OSError:
        # Another process on this machine already serves them there (several API servers).
        log.warning("metrics.port_in_use", port=port)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the API until SIGTERM/SIGINT."""
    settings.require(*REQUIRED_FOR_SERVE)
    check_webhook_secrets(settings)
    configure_logging(settings.log_format)
    warn_about_unpinned_jwt_claims(settings)
    run_app(build_app(settings), args.host, args.port)
    return 0


def warn_about_unpinned_jwt_claims(settings: Settings) -> None:
    """Warn when user JWTs are accepted without `iss` or `aud` checks: any token signed
    with the key passes, including those the identity provider issued for other APIs."""
    accepts_jwts = bool(settings.jwt_secret or settings.jwt_public_key)
    unset = [
        name
        for name, value in (
            ("BITLOOT_JWT_ISSUER", settings.jwt_issuer),
            ("BITLOOT_JWT_AUDIENCE", settings.jwt_audience),
        )
        if not value
    ]
    if accepts_jwts and unset:
        log.warning("auth.jwt_claims_not_checked", unset=unset)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `bitloot serve`."""
    serve = sub.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.set_defaults(handler=cmd_serve)
