"""What the send task needs from its process, set once when the worker starts.

procrastinate calls tasks with their JSON arguments only, so the pool, the settings, the
transport and the token minter live here. The worker sets them after opening `queue_app`:

    set_runtime(Runtime(pool=pool, settings=settings,
                        transport=transport_from_settings(settings),
                        mint_order_token=...))
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from bitloot.config import Settings
from bitloot.delivery.transport import MailTransport


@dataclass(frozen=True, slots=True)
class Runtime:
    """The worker's resources for sending delivery emails."""

    pool: AsyncConnectionPool
    settings: Settings
    transport: MailTransport
    # Mints the order-scoped access token that the key-page link carries in its fragment.
    mint_order_token: Callable[[uuid.UUID], str]


_runtime: Runtime | None = None


def set_runtime(runtime: Runtime | None) -> None:
    """Install (or, with None, remove) the process-wide runtime."""
    global _runtime  # noqa: PLW0603 - one per process, set at worker start
    _runtime = runtime


def get_runtime() -> Runtime:
    """The installed runtime; raises RuntimeError when the worker has not set one."""
    if _runtime is None:
        raise RuntimeError("bitloot.delivery.runtime.set_runtime() was not called at start")
    return _runtime
