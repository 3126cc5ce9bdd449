"""What a worker's tasks need at run time, built once when the worker starts.

procrastinate calls tasks with their JSON arguments only, so the long-lived resources (the
connection pool, the Kinguin client, the object store, the master keys) live here. The
worker sets it before it starts fetching jobs; tests set it too.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from bitloot.config import Settings
    from bitloot.kinguin.client import KinguinClient
    from bitloot.payments.nowpayments import NowPaymentsClient
    from bitloot.storage.base import ObjectStorage
    from bitloot.vault.crypto import MasterKeyRing


@dataclass
class Runtime:
    """The resources tasks share in one worker process."""

    settings: Settings
    pool: AsyncConnectionPool
    kinguin: KinguinClient
    storage: ObjectStorage
    ring: MasterKeyRing
    mint_order_token: Callable[[uuid.UUID], str]
    # None when no NOWPayments API key is configured: the reconciler then skips payments.
    nowpayments: NowPaymentsClient | None = None


_current: Runtime | None = None


def set_runtime(runtime: Runtime | None) -> None:
    """Install (or clear) this process's runtime."""
    global _current  # noqa: PLW0603 - one per process, set at start
    _current = runtime


def get_runtime() -> Runtime:
    """This process's runtime; a task running without one is a wiring bug."""
    if _current is None:
        raise RuntimeError("the worker runtime is not set up (bitloot.runtime.set_runtime)")
    return _current
