"""Rate limits kept in PostgreSQL: the GCRA bucket itself, who counts as the client, and
each limited endpoint (download links, order creation, failed webhook signatures)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from unittest import mock

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request
from harness import Served, serve_app
from psycopg_pool import AsyncConnectionPool

from bitloot.auth.order_tokens import mint_order_token
from bitloot.auth.tokens import mint_user_token
from bitloot.config import Settings
from bitloot.db.connect import open_pool
from bitloot.nowpayments.signature import RawNumber, dump_json, sign_ipn
from bitloot.sim.app import SimConfig
from bitloot.sim.kinguin_catalog import TEXT_PRODUCT_ID
from bitloot.web import ratelimit
from bitloot.web.context import RESOURCES

Conn = Any


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[AsyncConnectionPool]:
    p = open_pool(db_url, min_size=1, max_size=12)
    await p.open(wait=True)
    yield p
    await p.close()


# --- the bucket --------------------------------------------------------------------------


async def test_a_bucket_allows_a_burst_then_one_request_per_interval(
    pool: AsyncConnectionPool, conn: Conn
) -> None:
    verdicts = [await ratelimit.take(pool, "t:burst", per_minute=6) for _ in range(7)]
    assert [v.allowed for v in verdicts] == [True] * 6 + [False]
    assert 9.0 < verdicts[-1].retry_after <= 10.0  # one interval (60 s / 6), less elapsed time
    # Ten seconds later (moved back in time rather than waited for), exactly one more.
    await conn.execute("UPDATE rate_limit_buckets SET tat = tat - interval '10 seconds'")
    later = [await ratelimit.take(pool, "t:burst", per_minute=6) for _ in range(2)]
    assert [v.allowed for v in later] == [True, False]


async def test_a_refused_request_does_not_push_the_bucket_further(
    pool: AsyncConnectionPool, conn: Conn
) -> None:
    for _ in range(2):
        await ratelimit.take(pool, "t:refused", per_minute=2)
    cur = await conn.execute("SELECT tat FROM rate_limit_buckets")
    before = await cur.fetchone()
    for _ in range(5):
        assert not (await ratelimit.take(pool, "t:refused", per_minute=2)).allowed
    cur = await conn.execute("SELECT tat FROM rate_limit_buckets")
    assert await cur.fetchone() == before


async def test_concurrent_checks_never_allow_more_than_the_limit(pool: AsyncConnectionPool) -> None:
    verdicts = await asyncio.gather(
        *[ratelimit.take(pool, "t:race", per_minute=10) for _ in range(40)]
    )
    assert sum(v.allowed for v in verdicts) == 10


async def test_buckets_are_independent_and_zero_means_unlimited(
    pool: AsyncConnectionPool, conn: Conn
) -> None:
    assert (await ratelimit.take(pool, "t:a", per_minute=1)).allowed
    assert not (await ratelimit.take(pool, "t:a", per_minute=1)).allowed
    assert (await ratelimit.take(pool, "t:b", per_minute=1)).allowed
    for _ in range(50):
        assert (await ratelimit.take(pool, "t:off", per_minute=0)).allowed
    cur = await conn.execute("SELECT count(*) FROM rate_limit_buckets WHERE bucket = 't:off'")
    assert await cur.fetchone() == (0,)


async def test_pruning_removes_only_buckets_that_are_full_again(
    pool: AsyncConnectionPool, conn: Conn
) -> None:
    await conn.execute(
        "INSERT INTO rate_limit_buckets (bucket, tat) VALUES"
        " ('t:old', now() - interval '1 hour'), ('t:live', now() + interval '1 minute')"
    )
    await conn.execute(ratelimit.Q["prune_buckets"], {"limit": 100})
    cur = await conn.execute("SELECT bucket FROM rate_limit_buckets")
    assert await cur.fetchall() == [("t:live",)]


# --- who the client is -------------------------------------------------------------------


def request_from(peer: str, settings: Settings, forwarded: str | None = None) -> Any:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (peer, 5555) if name == "peername" else default
    )
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return make_mocked_request("GET", "/", headers=headers, transport=transport)


def test_forwarded_for_is_ignored_unless_proxies_are_trusted(
    make_settings: Callable[..., Settings],
) -> None:
    direct, behind_one = make_settings(), make_settings(trusted_proxy_hops=1)
    chain = "198.51.100.7, 203.0.113.9"  # the client wrote the first; our proxy added the last
    assert ratelimit.client_address(request_from("10.0.0.2", direct, chain), direct) == "10.0.0.2"
    assert (
        ratelimit.client_address(request_from("10.0.0.2", behind_one, chain), behind_one)
        == "203.0.113.9"
    )
    two = make_settings(trusted_proxy_hops=2)
    assert ratelimit.client_address(request_from("10.0.0.2", two, chain), two) == "198.51.100.7"
    # A chain shorter than the proxies we trust did not come through them: use the peer.
    assert ratelimit.client_address(request_from("10.0.0.2", two, "1.2.3.4"), two) == "10.0.0.2"
    assert ratelimit.client_address(request_from("10.0.0.2", two, "junk, x"), two) is None
    mapped = request_from("::ffff:192.0.2.1", direct)
    assert ratelimit.client_address(mapped, direct) == "192.0.2.1"


# --- the limited endpoints, over HTTP ------------------------------------------------------

StartApi = Callable[..., Awaitable[Served]]


@pytest.fixture
async def start_api(
    make_settings: Callable[..., Settings], api_port: int, sim: Any
) -> AsyncIterator[StartApi]:
    """Start the API (on the port the sims call) with some settings overridden."""
    started: list[Served] = []

    async def start(**overrides: object) -> Served:
        from bitloot.server import build_app

        served = await serve_app(await build_app(make_settings(**overrides)), api_port)
        started.append(served)
        return served

    yield start
    for served in started:
        await served.runner.cleanup()


async def make_order(conn: Conn, user_id: str | None = None) -> uuid.UUID:
    cur = await conn.execute(
        "INSERT INTO orders (user_id, email, currency, total_amount)"
        " VALUES (%s, 'ada@example.com', 'eur', 9.99) RETURNING id",
        (user_id,),
    )
    row = await cur.fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


async def get_status(http: aiohttp.ClientSession, url: str, token: str) -> tuple[int, Any]:
    async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, resp.headers.get("Retry-After")


async def test_download_links_are_limited_per_principal(start_api: StartApi, conn: Conn) -> None:
    api = await start_api(rate_limit_download_per_minute=3)
    first, second = await make_order(conn), await make_order(conn)
    first_token = await mint_order_token(conn, first)
    second_token = await mint_order_token(conn, second)
    async with aiohttp.ClientSession() as http:
        one = [
            await get_status(http, f"{api.url}/fulfillment/{first}/download-link", first_token)
            for _ in range(4)
        ]
        other = await get_status(
            http, f"{api.url}/fulfillment/{second}/download-link", second_token
        )
    # Unfulfilled orders answer 409; the attempts still count.
    assert [s for s, _ in one] == [409, 409, 409, 429]
    assert 1 <= int(one[-1][1]) <= 20
    assert other[0] == 409  # another token's bucket is untouched


async def test_download_links_are_limited_per_client_address(
    start_api: StartApi, conn: Conn
) -> None:
    api = await start_api(rate_limit_download_per_address_per_minute=2)
    settings = api.app[RESOURCES].settings
    async with aiohttp.ClientSession() as http:
        statuses = []
        for n in range(3):  # a new user each time: only the address is shared
            user = f"user-{n}"
            order_id = await make_order(conn, user)
            token = mint_user_token(settings, sub=user)
            url = f"{api.url}/fulfillment/{order_id}/download-link"
            statuses.append((await get_status(http, url, token))[0])
        # Counted before the token is looked at: guessing tokens costs too.
        async with http.get(f"{api.url}/fulfillment/{uuid.uuid4()}/download-link") as resp:
            statuses.append(resp.status)
    assert statuses == [409, 409, 429, 429]


async def test_order_creation_is_limited_per_client_address(
    start_api: StartApi, conn: Conn
) -> None:
    api = await start_api(rate_limit_orders_per_minute=2)
    await conn.execute(
        "INSERT INTO products (product_id, name, price, currency, max_cost)"
        " VALUES (%s, 'Game', 14.99, 'eur', 12)",
        (TEXT_PRODUCT_ID,),
    )
    body = {"email": "ada@example.com", "items": [{"productId": TEXT_PRODUCT_ID, "qty": 1}]}
    answers = []
    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            async with http.post(f"{api.url}/orders", json=body) as resp:
                answers.append((resp.status, resp.headers.get("Retry-After"), await resp.json()))
    assert [a[0] for a in answers] == [201, 201, 429]
    _, retry_after, problem = answers[-1]
    assert retry_after is not None and 1 <= int(retry_after) <= 30
    assert problem["type"].endswith("/too-many-requests")
    assert problem["retryAfter"] == int(retry_after)
    cur = await conn.execute("SELECT count(*) FROM orders")
    assert await cur.fetchone() == (2,)


def signed_ipn() -> tuple[bytes, str]:
    """A correctly signed IPN (for an order we do not know: accepted and flagged)."""
    body = {
        "payment_id": RawNumber("5077120001"),
        "invoice_id": RawNumber("4522620001"),
        "payment_status": "waiting",
        "price_amount": RawNumber("14.99"),
        "price_currency": "eur",
        "pay_amount": RawNumber("0.00024"),
        "actually_paid": RawNumber("0"),
        "pay_currency": "btc",
        "order_id": str(uuid.uuid4()),
        "updated_at": RawNumber("1767225600000"),
    }
    raw = dump_json(body).encode()
    return raw, sign_ipn(raw, SimConfig().nowpayments_ipn_secret)


async def test_failed_webhook_signatures_turn_from_401_to_429(start_api: StartApi) -> None:
    api = await start_api(rate_limit_bad_signatures_per_minute=3)
    raw, good = signed_ipn()
    answers: list[tuple[str, int]] = []
    async with aiohttp.ClientSession() as http:

        async def ipn(signature: str | None) -> None:
            headers = {"Content-Type": "application/json"}
            if signature:
                headers["x-nowpayments-sig"] = signature
            async with http.post(
                f"{api.url}/webhooks/nowpayments", data=raw, headers=headers
            ) as resp:
                answers.append(("ipn", resp.status))
                if resp.status == 429:
                    assert int(resp.headers["Retry-After"]) >= 1

        async def kinguin(secret: str) -> None:
            headers = {"X-Event-Name": "order.status", "X-Event-Secret": secret}
            async with http.post(f"{api.url}/webhooks/kinguin", json={}, headers=headers) as resp:
                answers.append(("kinguin", resp.status))

        for signature in ["0" * 128, None, "f" * 128, "0" * 128]:
            await ipn(signature)
        await ipn(good)  # a correct signature is never counted nor refused
        for _ in range(4):
            await kinguin("wrong")  # a bucket of its own
    assert answers == [
        ("ipn", 401),
        ("ipn", 401),
        ("ipn", 401),
        ("ipn", 429),
        ("ipn", 200),
        ("kinguin", 401),
        ("kinguin", 401),
        ("kinguin", 401),
        ("kinguin", 429),
    ]
