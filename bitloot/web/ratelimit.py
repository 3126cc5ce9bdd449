"""Rate limits shared by every server process: GCRA buckets in PostgreSQL.

One row per bucket (`rate_limit_buckets`), one atomic upsert per check (see
`queries.sql`), so the limits hold however many `bitloot serve` processes run. A limit of
N per minute allows a burst of N, then one request every 60/N seconds; past it the
request gets a 429 with `Retry-After`. A limit of 0 turns the rule off.

Old buckets are harmless (one small row per client or principal, and a bucket whose time
has passed behaves exactly like a missing one); about one check in `PRUNE_ONE_IN` also
deletes a batch of those, so the table stays the size of the recently active clients.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass

import structlog
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from bitloot.auth.tokens import Principal
from bitloot.config import Settings
from bitloot.db.queries import QuerySet
from bitloot.web.context import resources
from bitloot.web.errors import TooManyRequests

Q = QuerySet("bitloot.web")
log = structlog.get_logger(__name__)

PERIOD_SECONDS = 60.0
HOUR_SECONDS = 3600.0
PRUNE_ONE_IN = 500
PRUNE_BATCH = 1000
# An IPv6 client usually holds a whole /64: limit the network, not each of its addresses.
IPV6_PREFIX = 64


@dataclass(frozen=True)
class Verdict:
    """The answer of one check: allowed, or how many seconds until the next allowed request."""

    allowed: bool
    retry_after: float = 0.0


async def take(
    pool: AsyncConnectionPool, bucket: str, per_minute: int, *, period: float = PERIOD_SECONDS
) -> Verdict:
    """Count one request against `bucket` (limit `per_minute`, 0 = unlimited). A `period`
    other than a minute makes it a limit per that many seconds (bursts of the same number)."""
    if per_minute <= 0:
        return Verdict(allowed=True)
    interval = period / per_minute
    async with pool.connection() as conn:
        cur = await conn.execute(
            Q["take_from_bucket"],
            {"bucket": bucket, "interval": interval, "period": period},
        )
        row = await cur.fetchone()
        if secrets.randbelow(PRUNE_ONE_IN) == 0:
            await conn.execute(Q["prune_buckets"], {"limit": PRUNE_BATCH})
    if row is None:  # refused, and the row was committed after this statement's snapshot
        return Verdict(allowed=False, retry_after=interval)
    return Verdict(allowed=bool(row[0]), retry_after=float(row[1]))


async def enforce(
    request: web.Request,
    rule: str,
    subject: str,
    per_minute: int,
    *,
    period: float = PERIOD_SECONDS,
) -> None:
    """Count the request in bucket `rule:subject`; `TooManyRequests` when over the limit."""
    verdict = await take(resources(request).pool, f"{rule}:{subject}", per_minute, period=period)
    if not verdict.allowed:
        log.info("ratelimit.exceeded", rule=rule, retry_after=round(verdict.retry_after, 3))
        raise TooManyRequests(
            "Too many requests; retry after the number of seconds in Retry-After.",
            retry_after=max(verdict.retry_after, 0.001),
        )


def client_address(request: web.Request, settings: Settings) -> str | None:
    """The client's IP address, or None when the peer is not an IP (a unix socket).

    The socket's peer, unless `trusted_proxy_hops` is n > 0: then the n-th entry from the
    right of `X-Forwarded-For`, the address our outermost trusted proxy saw (entries left
    of it are whatever the client chose to send).
    """
    candidate = request.remote
    hops = settings.trusted_proxy_hops
    if hops:
        chain = [
            part.strip()
            for header in request.headers.getall("X-Forwarded-For", [])
            for part in header.split(",")
            if part.strip()
        ]
        if len(chain) >= hops:
            candidate = chain[-hops]
    return _normalised_ip(candidate)


def _normalised_ip(value: str | None) -> str | None:
    if not value:
        return None
    try:
        address = ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _address_bucket(request: web.Request) -> str:
    address = client_address(request, resources(request).settings)
    if address is None:
        return "unknown"
    ip = ipaddress.ip_address(address)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/{IPV6_PREFIX}", strict=False))
    return address


def _principal_bucket(principal: Principal) -> str:
    if principal.kind == "order_token":
        return f"order:{principal.order_id}"
    return f"{principal.kind}:{principal.subject}"


async def limit_order_creation(request: web.Request) -> None:
    """`POST /orders`, per client address."""
    per_minute = resources(request).settings.rate_limit_orders_per_minute
    await enforce(request, "orders:address", _address_bucket(request), per_minute)


async def limit_failed_signature(request: web.Request, source: str) -> None:
    """Count a webhook whose signature or secret failed, per `source` and client address.

    Call it only after the check failed: the caller's 401 becomes a 429 past the limit,
    and a correctly signed webhook is never counted nor refused.
    """
    per_minute = resources(request).settings.rate_limit_bad_signatures_per_minute
    await enforce(request, f"bad-signature:{source}", _address_bucket(request), per_minute)


async def limit_download_by_address(request: web.Request) -> None:
    """Download links, per client address (checked before the token, so guessing costs)."""
    per_minute = resources(request).settings.rate_limit_download_per_address_per_minute
    await enforce(request, "download:address", _address_bucket(request), per_minute)


async def limit_download_by_principal(request: web.Request, principal: Principal) -> None:
    """Download links, per user (or admin) id or per order token's order."""
    per_minute = resources(request).settings.rate_limit_download_per_minute
    await enforce(request, "download:principal", _principal_bucket(principal), per_minute)


async def limit_recovery_by_address(request: web.Request) -> None:
    """`POST /orders/recover`, per client address, per hour (before the body is read)."""
    per_hour = resources(request).settings.rate_limit_recover_per_address_per_hour
    await enforce(
        request, "recover:address", _address_bucket(request), per_hour, period=HOUR_SECONDS
    )


async def recovery_allowed_for(request: web.Request, address_digest: str) -> bool:
    """Count a recovery request for one email address (by its digest), per hour; whether it
    is within the limit. The caller decides what a refusal looks like (no 429: that would
    tell whether the address was asked for before)."""
    settings = resources(request).settings
    verdict = await take(
        resources(request).pool,
        f"recover:email:{address_digest}",
        settings.rate_limit_recover_per_email_per_hour,
        period=HOUR_SECONDS,
    )
    return verdict.allowed
