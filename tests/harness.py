"""Helpers shared by the tests (import as `from harness import ...`; conftest files are not
modules one can import reliably once there are several of them)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from bitloot.processes import free_port

TEST_JWT_SECRET = "test-jwt-secret-long-enough-for-hs256-0123456789"


@dataclass
class Served:
    """An aiohttp app served on 127.0.0.1."""

    app: web.Application
    url: str
    runner: web.AppRunner


async def serve_app(app: web.Application, port: int | None = None) -> Served:
    """Serve `app` on a loopback port (a free one unless given)."""
    port = port or free_port()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return Served(app=app, url=f"http://127.0.0.1:{port}", runner=runner)
