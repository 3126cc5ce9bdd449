"""Start-up shared by `serve`, `worker` and the demo: check everything, then hand it over.

Anything wrong (a setting, the database, the schema, the master keys, the object store)
becomes one `StartupError` line; the CLI prints it and exits 2.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

from bitloot.config import Settings
from bitloot.db.connect import database_url, open_pool
from bitloot.db.migrate import pending_migrations
from bitloot.storage.base import ObjectStorage, StorageError
from bitloot.storage.factory import open_storage
from bitloot.vault.canary import check_master_keys
from bitloot.vault.crypto import LOCAL_URL_PURPOSE, MasterKeyRing, VaultError

log = structlog.get_logger(__name__)


class StartupError(Exception):
    """The process cannot start; the message is one line and holds no secret."""


@dataclass
class Core:
    """What every long-running process holds."""

    settings: Settings
    conninfo: str
    pool: AsyncConnectionPool
    ring: MasterKeyRing
    storage: ObjectStorage


def master_key_ring(settings: Settings) -> MasterKeyRing:
    """The configured master keys, or a `StartupError` naming the variable."""
    if settings.master_keys is None:
        raise StartupError("BITLOOT_MASTER_KEYS is required but is not set")
    try:
        return MasterKeyRing.parse(settings.master_keys.get_secret_value())
    except ValueError as exc:
        raise StartupError(str(exc)) from None


async def open_core(settings: Settings, stack: AsyncExitStack, *, pool_size: int = 10) -> Core:
    """Open the pool and the object store and check the schema and the master keys.

    Everything opened is registered on `stack`, which closes it in reverse order.
    """
    ring = master_key_ring(settings)
    conninfo = database_url(settings)
    try:
        pending = pending_migrations(conninfo)
    except psycopg.OperationalError as exc:
        raise StartupError(f"cannot reach the database: {_first_line(exc)}") from None
    if pending:
        raise StartupError(
            f"the database schema is not current ({len(pending)} pending migration(s)): "
            "run `bitloot migrate`"
        )
    pool = open_pool(conninfo, max_size=pool_size)
    try:
        await pool.open(wait=True, timeout=15)
    except Exception as exc:
        raise StartupError(f"cannot open database connections: {_first_line(exc)}") from None
    stack.push_async_callback(pool.close)
    async with pool.connection() as conn:
        try:
            await check_master_keys(conn, ring)
        except VaultError as exc:
            raise StartupError(str(exc)) from None
    try:
        storage = await open_storage(
            settings.effective_storage_url,
            public_url=settings.public_url,
            signing_key=ring.derived_key(LOCAL_URL_PURPOSE),
            s3_endpoint_url=settings.s3_endpoint_url,
            s3_access_key_id=_secret(settings.s3_access_key_id),
            s3_secret_access_key=_secret(settings.s3_secret_access_key),
            s3_region=settings.s3_region,
        )
        stack.push_async_callback(storage.close)
        await storage.check()
    except StorageError as exc:
        raise StartupError(str(exc)) from None
    log.info("startup.checked", master_keys=list(ring.ids), storage=type(storage).__name__)
    return Core(settings=settings, conninfo=conninfo, pool=pool, ring=ring, storage=storage)


def _secret(value: object) -> str | None:
    from pydantic import SecretStr

    return value.get_secret_value() if isinstance(value, SecretStr) else None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
