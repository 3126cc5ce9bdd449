"""The one set of long-lived resources every `serve` and `worker` process holds.

`open_resources` checks everything at start-up (a setting, the database, the schema, the
master keys, the object store), writes the payment policy where the database reads it
(`store_payment_policy`), and turns anything wrong into one `StartupError` line; the
CLI prints it and exits 2. The server hands the result to its handlers
(`bitloot.web.context`); a worker installs it for its tasks (`install`/`current`), because
procrastinate calls tasks with their JSON arguments only.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr

from bitloot.auth import legacy_order_jwt
from bitloot.auth.tokens import TokenVerifier
from bitloot.config import Settings
from bitloot.db.connect import behind_transaction_pooler, database_url, open_pool
from bitloot.db.migrate import pending_migrations
from bitloot.kinguin.client import KinguinClient
from bitloot.mail import MailTransport, transport_from_settings
from bitloot.nowpayments.client import NowPaymentsClient
from bitloot.storage.base import ObjectStorage, StorageError
from bitloot.storage.factory import open_storage
from bitloot.vault.canary import check_master_keys
from bitloot.vault.crypto import LOCAL_URL_PURPOSE, MasterKeyRing, VaultError

log = structlog.get_logger(__name__)

KinguinCallHook = Callable[[str, float, str], None]


class StartupError(Exception):
    """The process cannot start; the message is one line and holds no secret."""


@dataclass
class Resources:
    """What handlers and tasks share in one process. A provider client is None in a
    process that does not talk to that provider (the API buys nothing from Kinguin: its
    client only reads stock and price, `bitloot.catalog.service.reader_client`)."""

    settings: Settings
    pool: AsyncConnectionPool
    ring: MasterKeyRing
    storage: ObjectStorage
    tokens: TokenVerifier
    conninfo: str = ""
    nowpayments: NowPaymentsClient | None = None
    kinguin: KinguinClient | None = None
    mail: MailTransport | None = None

    @property
    def kinguin_client(self) -> KinguinClient:
        """The Kinguin client; a process without one asking for it is a wiring bug."""
        if self.kinguin is None:
            raise RuntimeError("this process has no Kinguin client (bitloot worker has one)")
        return self.kinguin

    @property
    def nowpayments_client(self) -> NowPaymentsClient:
        """The NOWPayments client; a process without one asking for it is a wiring bug."""
        if self.nowpayments is None:
            raise RuntimeError("this process has no NOWPayments client (BITLOOT_NOWPAYMENTS_*)")
        return self.nowpayments

    @property
    def mail_transport(self) -> MailTransport:
        """Where emails go; a process without a transport asking for one is a wiring bug."""
        if self.mail is None:
            raise RuntimeError("this process has no mail transport (bitloot worker has one)")
        return self.mail


def master_key_ring(settings: Settings) -> MasterKeyRing:
    """The configured master keys, or a `StartupError` naming the variable."""
    if settings.master_keys is None:
        raise StartupError("BITLOOT_MASTER_KEYS is required but is not set")
    try:
        return MasterKeyRing.parse(settings.master_keys.get_secret_value())
    except ValueError as exc:
        raise StartupError(str(exc)) from None


def token_verifier(settings: Settings, ring: MasterKeyRing | None = None) -> TokenVerifier:
    """The verifier of user JWTs for these settings. Order tokens need no key: they are
    looked up in the database (`bitloot.auth.order_tokens`), whatever the master keys;
    with `ring`, the first release's order JWTs are accepted until they expire."""
    legacy = legacy_order_jwt.signing_keys(ring) if ring is not None else None
    return TokenVerifier(settings, legacy_order_keys=legacy)


async def open_resources(
    settings: Settings,
    stack: AsyncExitStack,
    *,
    pool_size: int = 10,
    kinguin: bool = False,
    mail: bool = False,
    on_kinguin_call: KinguinCallHook | None = None,
) -> Resources:
    """Open the pool, the object store and the provider clients, and check the schema and
    the master keys. Everything opened is registered on `stack` (closed in reverse order).

    The NOWPayments client is opened whenever an API key is configured (the API needs it
    for invoices; a worker's reconciler uses it when it can); `kinguin` and `mail` are for
    processes that buy and send.
    """
    ring = master_key_ring(settings)
    conninfo = database_url(settings)
    try:
        pending = pending_migrations(conninfo)
    except psycopg.OperationalError as exc:
        raise StartupError(f"cannot reach the database: {first_line(exc)}") from None
    if pending:
        raise StartupError(
            f"the database schema is not current ({len(pending)} pending migration(s)): "
            "run `bitloot migrate`"
        )
    pool = open_pool(
        conninfo, max_size=pool_size, transaction_pooler=behind_transaction_pooler(settings)
    )
    try:
        await pool.open(wait=True, timeout=15)
    except Exception as exc:
        raise StartupError(f"cannot open database connections: {first_line(exc)}") from None
    stack.push_async_callback(pool.close)
    async with pool.connection() as conn:
        try:
            await check_master_keys(conn, ring)
        except VaultError as exc:
            raise StartupError(str(exc)) from None
        await store_payment_policy(conn, settings)
    storage = await _open_checked_storage(settings, ring, stack)
    resources = Resources(
        settings=settings,
        pool=pool,
        ring=ring,
        storage=storage,
        tokens=token_verifier(settings, ring),
        conninfo=conninfo,
    )
    np_key = _secret(settings.nowpayments_api_key)
    if np_key:
        resources.nowpayments = await stack.enter_async_context(
            NowPaymentsClient(settings.nowpayments_api_url, np_key)
        )
    if kinguin:
        resources.kinguin = await stack.enter_async_context(
            KinguinClient(
                settings.kinguin_api_url,
                _secret(settings.kinguin_api_key) or "",
                timeout=settings.kinguin_timeout,
                on_call=on_kinguin_call,
            )
        )
    if mail:
        resources.mail = transport_from_settings(settings)
    log.info("startup.checked", master_keys=list(ring.ids), storage=type(storage).__name__)
    return resources


# The one row of payment_policy (migration 0012): the database's copy of the settings that
# decide when a payment pays an order, read by bitloot_payment_evidence() (the orders
# trigger that guards `paid`, the worker's and the reconciler's re-check).
STORE_PAYMENT_POLICY = """
INSERT INTO payment_policy (singleton, paid_on, tolerance) VALUES (true, %(paid_on)s, %(tolerance)s)
ON CONFLICT (singleton) DO UPDATE SET paid_on = EXCLUDED.paid_on, tolerance = EXCLUDED.tolerance
 WHERE (payment_policy.paid_on, payment_policy.tolerance)
       IS DISTINCT FROM (EXCLUDED.paid_on, EXCLUDED.tolerance)
"""


async def store_payment_policy(conn: psycopg.AsyncConnection[Any], settings: Settings) -> None:
    """Write BITLOOT_PAID_ON and BITLOOT_PAYMENT_TOLERANCE where the database reads them.

    Every `serve` and `worker` does so when it starts (an UPSERT of the one row), so the
    database judges `paid` with the policy the processes run with; processes started with
    different settings would overwrite each other, so run them all with the same ones.
    """
    params = {"paid_on": settings.paid_on, "tolerance": settings.payment_tolerance}
    await conn.execute(STORE_PAYMENT_POLICY, params)


async def _open_checked_storage(
    settings: Settings, ring: MasterKeyRing, stack: AsyncExitStack
) -> ObjectStorage:
    try:
        storage = await open_storage(
            settings.effective_storage_url,
            public_url=settings.public_url,
            # Signed with the active master key's, accepted with any listed key's: a URL
            # issued just before a new key went first still works after the restart.
            signing_keys=ring.derived_keys(LOCAL_URL_PURPOSE),
            s3_endpoint_url=settings.s3_endpoint_url,
            s3_access_key_id=_secret(settings.s3_access_key_id),
            s3_secret_access_key=_secret(settings.s3_secret_access_key),
            s3_region=settings.s3_region,
        )
        stack.push_async_callback(storage.close)
        await storage.check()
    except StorageError as exc:
        raise StartupError(str(exc)) from None
    return storage


# --- the worker's resources, for tasks ------------------------------------------------------

_current: Resources | None = None


def install(resources: Resources | None) -> None:
    """Install (or, with None, remove) this process's resources for its tasks."""
    global _current  # noqa: PLW0603 - one per process, set at worker start
    _current = resources


def current() -> Resources:
    """This process's resources; a task running without them is a wiring bug."""
    if _current is None:
        raise RuntimeError("no resources installed (bitloot.resources.install at worker start)")
    return _current


def _secret(value: object) -> str | None:
    return value.get_secret_value() if isinstance(value, SecretStr) else None


def first_line(exc: BaseException) -> str:
    """The first line of an error's text (driver errors run to several), or its type."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
