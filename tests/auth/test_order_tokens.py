"""Order access tokens: random, stored only as a SHA-256, expiring, revocable, and never
written anywhere (an exception, a log line, the database) in the clear."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import aiohttp
import psycopg
import pytest
from harness import bare_order as new_order
from psycopg_pool import AsyncConnectionPool
from structlog.testing import capture_logs

from bitloot.auth import order_tokens
from bitloot.auth.order_tokens import mint, mint_order_token, revoke, token_hash, verify
from bitloot.auth.tokens import InvalidToken, Principal
from bitloot.db.connect import open_pool
from bitloot.web.context import RESOURCES

Conn = psycopg.AsyncConnection[Any]


async def refused(db: Any, token: str, reason: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as info:
        await verify(db, token)
    assert info.value.reason == reason
    assert token not in str(info.value) and token not in repr(info.value)
    secret = token[len(order_tokens.PREFIX) :]
    assert len(secret) < 8 or secret not in str(info.value)
    return info.value


async def expire(conn: Conn, token: str) -> None:
    await conn.execute(
        "UPDATE order_access_tokens SET created_at = now() - interval '2 hours',"
        " expires_at = now() - interval '1 hour' WHERE token_hash = %s",
        (token_hash(token),),
    )


async def test_a_minted_token_opens_its_order_and_no_other(conn: Conn) -> None:
    mine, other = await new_order(conn), await new_order(conn)
    token = await mint(conn, mine, purpose="checkout", ttl_seconds=600)
    assert re.fullmatch(r"blot_[A-Za-z0-9_-]{43}", token)
    principal = await verify(conn, token)
    assert principal == Principal(kind="order_token", subject=str(mine), order_id=mine)
    assert principal.order_id != other and not principal.is_admin
    # Every token is fresh randomness, even for the same order.
    assert await mint(conn, mine, purpose="checkout", ttl_seconds=600) != token


async def test_verify_takes_a_pool_as_well_as_a_connection(conn: Conn, db_url: str) -> None:
    order_id = await new_order(conn)
    pool: AsyncConnectionPool = open_pool(db_url, min_size=1, max_size=2)
    await pool.open(wait=True)
    try:
        token = await mint_order_token(pool, order_id, ttl_seconds=600, purpose="email")
        assert (await verify(pool, token)).order_id == order_id
    finally:
        await pool.close()
    [(purpose,)] = await (await conn.execute("SELECT purpose FROM order_access_tokens")).fetchall()
    assert purpose == "email"


async def test_only_the_hash_is_stored(conn: Conn) -> None:
    order_id = await new_order(conn)
    tokens = [
        await mint(conn, order_id, purpose=purpose, ttl_seconds=600)
        for purpose in ("checkout", "email", "recovery")
    ]
    await revoke(conn, order_id, purpose="email", reason="resend")
    cur = await conn.execute("SELECT t::text, token_hash FROM order_access_tokens t")
    rows = await cur.fetchall()
    assert sorted(bytes(h) for _, h in rows) == sorted(
        hashlib.sha256(t.encode()).digest() for t in tokens
    )
    for token in tokens:
        secret = token[len(order_tokens.PREFIX) :]
        for text, _ in rows:
            assert secret not in text and secret.encode().hex() not in text


async def test_an_expired_token_is_refused_as_expired(conn: Conn) -> None:
    order_id = await new_order(conn)
    token = await mint(conn, order_id, purpose="checkout", ttl_seconds=600)
    await expire(conn, token)
    error = await refused(conn, token, "expired")
    assert str(error) == "token has expired"


async def test_revoking_stops_the_tokens_of_that_purpose_only(conn: Conn) -> None:
    order_id, other = await new_order(conn), await new_order(conn)
    email_1 = await mint(conn, order_id, purpose="email", ttl_seconds=600)
    email_2 = await mint(conn, order_id, purpose="email", ttl_seconds=600)
    checkout = await mint(conn, order_id, purpose="checkout", ttl_seconds=600)
    elsewhere = await mint(conn, other, purpose="email", ttl_seconds=600)

    assert await revoke(conn, order_id, purpose="email", reason="resend") == 2
    for token in (email_1, email_2):
        await refused(conn, token, "revoked")
    assert (await verify(conn, checkout)).order_id == order_id
    assert (await verify(conn, elsewhere)).order_id == other
    # Already revoked tokens are not counted (nor re-dated) again; None means every purpose.
    assert await revoke(conn, order_id, reason="refund") == 1
    await refused(conn, checkout, "revoked")
    cur = await conn.execute(
        "SELECT purpose, revoked_reason FROM order_access_tokens WHERE order_id = %s"
        " ORDER BY purpose, revoked_reason",
        (order_id,),
    )
    assert await cur.fetchall() == [
        ("checkout", "refund"),
        ("email", "resend"),
        ("email", "resend"),
    ]


async def test_an_unknown_token_is_refused(conn: Conn) -> None:
    await refused(conn, order_tokens.new_token(), "unknown")


@pytest.mark.parametrize(
    "token",
    [
        "blot_",
        "blot_" + "A" * 42,
        "blot_" + "A" * 44,
        "blot_" + "A" * 42 + "=",
        "blot_" + "A" * 42 + "\n",
        "blot_" + "é" * 43,
        "blot_" + "A" * 42 + "\udcff",
        "BLOT_" + "A" * 43,
        "eyJhbGciOiJIUzI1NiJ9.e30.x",
    ],
)
async def test_a_malformed_token_is_refused_without_a_lookup(token: str) -> None:
    # No database at all: a malformed token never reaches one.
    await refused(None, token, "malformed")


async def test_mint_refuses_a_lifetime_that_is_not_positive(conn: Conn) -> None:
    order_id = await new_order(conn)
    for ttl in (0, -1):
        with pytest.raises(ValueError, match="ttl_seconds"):
            await mint(conn, order_id, purpose="checkout", ttl_seconds=ttl)


async def test_over_http_every_refusal_is_a_401_and_no_log_line_holds_the_token(
    api: Any, conn: Conn
) -> None:
    order_id = await new_order(conn)
    pool = api.app[RESOURCES].pool
    good = await mint_order_token(pool, order_id)
    expired = await mint_order_token(pool, order_id)
    await expire(conn, expired)
    revoked = await mint_order_token(pool, order_id, purpose="email")
    await revoke(conn, order_id, purpose="email", reason="resend")
    unknown = order_tokens.new_token()
    malformed = "blot_" + "A" * 40
    expected = {
        good: (200, None),
        expired: (401, "The bearer token has expired."),
        revoked: (401, "The bearer token is not valid."),
        unknown: (401, "The bearer token is not valid."),
        malformed: (401, "The bearer token is not valid."),
    }
    with capture_logs() as logs:
        async with aiohttp.ClientSession() as http:
            for token, (status, detail) in expected.items():
                headers = {"Authorization": f"Bearer {token}"}
                async with http.get(f"{api.url}/orders/{order_id}", headers=headers) as r:
                    body = await r.json(content_type=None)
                    assert r.status == status, body
                    if detail is not None:
                        assert body["detail"] == detail
                        assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
                    assert token not in str(body) and token not in str(r.headers)
    reasons = [e["reason"] for e in logs if e.get("event") == "auth.token_rejected"]
    assert sorted(reasons) == ["expired", "malformed", "revoked", "unknown"]
    for entry in logs:
        for token in expected:
            assert token[len(order_tokens.PREFIX) :] not in str(entry)
