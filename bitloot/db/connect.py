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


def direct_database_url(settings: Settings) -> str:
    """BITLOOT_DATABASE_DIRECT_URL, or the database URL: a real session to the database,
    for what a transaction pooler cannot carry (LISTEN, migrations)."""
    if settings.database_direct_url is not None:
        return settings.database_direct_url.get_secret_value()
    return database_url(settings)


def behind_transaction_pooler(settings: Settings) -> bool:
    """Whether DATABASE_URL leads to a transaction pooler (BITLOOT_DATABASE_POOLER)."""
    return settings.database_pooler == "transaction"


def open_pool(
    conninfo: str, *, min_size: int = 1, max_size: int = 10, transaction_pooler: bool = False
) -> AsyncConnectionPool:
    """An unopened pool of autocommit connections: callers own their transactions.

    `async with pool.connection() as conn, conn.transaction(): ...` is the pattern.

    With `transaction_pooler`, psycopg never prepares statements on the server: a transaction
    pooler hands each transaction any of its server connections, where a statement prepared
    by another client already exists (`DuplicatePreparedStatement`) or one prepared by this
    client does not. Nothing else in BitLoot outlives a transaction on these connections
    (settings are `set_config(..., true)`, no advisory locks, temporary tables or held
    cursors); LISTEN uses its own connection (`bitloot.queue.listen_on`).
    """
    return AsyncConnectionPool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        # A connect() kwarg, so procrastinate's own connections built from this pool's
        # kwargs (its LISTEN connection) get it too.
        kwargs={"prepare_threshold": None} if transaction_pooler else None,
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
