"""What request handlers share: settings, pool, keys, storage, token verifier, providers."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from bitloot.auth.tokens import TokenVerifier
from bitloot.config import Settings
from bitloot.payments.ipn import PaymentPolicy
from bitloot.payments.nowpayments import NowPaymentsClient
from bitloot.storage.base import ObjectStorage
from bitloot.vault.crypto import MasterKeyRing


@dataclass
class ApiContext:
    """Everything a handler may use, built once by `bitloot serve`."""

    settings: Settings
    conninfo: str
    pool: AsyncConnectionPool
    ring: MasterKeyRing
    storage: ObjectStorage
    verifier: TokenVerifier
    nowpayments: NowPaymentsClient
    policy: PaymentPolicy


CONTEXT = web.AppKey("context", ApiContext)


def context(request: web.Request) -> ApiContext:
    """The context of the application serving `request`."""
    return request.app[CONTEXT]
