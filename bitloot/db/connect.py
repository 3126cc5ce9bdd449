"""Where the database is, and the connection pool every process uses."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from bitloot.config import Settings


def database_url(settings: Settings) -> str:
    """The configured DATABASE_URL, or the embedded server's (started or reused)."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    from bitloot.db.embedded import ensure_embedded_server

    return ensure_embedded_server(settings.data_dir)


def open_pool(conninfo: str, *, min_size: int = 1, max_size: int = 10) -> AsyncConnectionPool:
    """An unopened pool of autocommit connections: callers own their transactions.

    `async with pool.connection() as conn, conn.transaction(): ...` is the pattern.
    """
    return AsyncConnectionPool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        open=False,
        # Set per connection rather than as a connect() kwarg: procrastinate opens its
        # LISTEN connection with the pool's kwargs plus its own autocommit=True.
        configure=_autocommit,
        # A connection broken by a database restart is replaced instead of failing a request.
        check=AsyncConnectionPool.check_connection,
        name="bitloot",
    )


async def _autocommit(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.set_autocommit(True)


async def set_actor(
    conn: psycopg.AsyncConnection[Any], actor: str, reason: str | None = None
) -> None:
    """Name who is acting for the rest of this transaction (read by the order_events trigger)."""
    await conn.execute(
        "SELECT set_config('bitloot.actor', %s, true), set_config('bitloot.reason', %s, true)",
        (actor, reason or ""),
    )


async def set_reason(conn: psycopg.AsyncConnection[Any], reason: str) -> None:
    """Name why, for the status changes that follow in this transaction (the actor stays):
    the specific cause (a shortfall, a currency mismatch, a poll limit), not the event."""
    await conn.execute("SELECT set_config('bitloot.reason', %s, true)", (reason,))
