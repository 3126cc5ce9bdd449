"""The IPN benchmark's baseline: a minimal aiohttp app that verifies nothing and does one
INSERT in one transaction per request, on the same database and the same pool size.

Run as its own process: `python -m bitloot.bench.baseline --port P` (DATABASE_URL from the
environment). What BitLoot adds on top of this (signature check, parsing, dedup, payment,
order transition, job, logging, metrics) is what the ratio prices.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from bitloot.db.queries import QuerySet

Q = QuerySet("bitloot.bench")
POOL = web.AppKey("pool", AsyncConnectionPool)
POOL_SIZE = 10  # what `bitloot serve` opens (bitloot.resources.open_core)


async def _autocommit(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.set_autocommit(True)


async def insert(request: web.Request) -> web.Response:
    """Store the body; answer like the IPN endpoint does."""
    body = await request.read()
    async with request.app[POOL].connection() as conn, conn.transaction():
        await conn.execute(Q["baseline_insert"], {"body": body.decode("utf-8")})
    return web.json_response({"status": "accepted"})


async def ready(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(conninfo: str) -> web.Application:
    """The baseline app; its pool opens and closes with it."""

    async def pool_ctx(app: web.Application) -> AsyncIterator[None]:
        pool = AsyncConnectionPool(
            conninfo, min_size=1, max_size=POOL_SIZE, open=False, configure=_autocommit
        )
        await pool.open(wait=True, timeout=15)
        app[POOL] = pool
        yield
        await pool.close()

    app = web.Application()
    app.cleanup_ctx.append(pool_ctx)
    app.router.add_post("/webhooks/nowpayments", insert)
    app.router.add_get("/readyz", ready)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(
        create_app(os.environ["DATABASE_URL"]),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
    )


if __name__ == "__main__":
    main()
