"""Order access tokens: the bearer string that opens one order, for guests and emailed links.

A token is ``blot_`` and 43 characters, the base64url of 32 random bytes; the prefix says
what it is (a log scanner, a secret scanner and `bitloot.web.auth` recognise it without a
look-up). Like a Stripe client secret it is random, not signed: nothing about it derives
from a master key, so rotating the master keys leaves every emailed link working.

BitLoot keeps only the token's SHA-256 (`order_access_tokens`, migration 0006), with the
order it opens, why it was issued, when it expires and whether it was revoked. A leaked
database therefore holds nothing that opens an order, a token can be revoked one order at
a time (an admin resend revokes the earlier email links), and its lifetime is a column
(`BITLOOT_ORDER_TOKEN_TTL` at issue), not a claim.

Every failure is an `InvalidToken` with a fixed message that never contains the token.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import uuid
from typing import Any, Literal

import psycopg
from psycopg_pool import AsyncConnectionPool

from bitloot.auth.tokens import InvalidToken, Principal
from bitloot.db.queries import QuerySet

Q = QuerySet("bitloot.auth")
Conn = psycopg.AsyncConnection[Any]
Database = AsyncConnectionPool | Conn
Purpose = Literal["checkout", "email", "recovery"]

PREFIX = "blot_"
_SECRET_BYTES = 32
# base64url of 32 bytes without padding: 43 characters.
_TOKEN = re.compile(PREFIX + r"[A-Za-z0-9_-]{43}")
# A lifetime for tools and tests that do not read the settings (an hour).
TOOL_TTL_SECONDS = 3600


def is_order_token(token: str) -> bool:
    """Whether a bearer token claims to be an order token (routing only; `verify` checks)."""
    return token.startswith(PREFIX)


def token_hash(token: str) -> bytes:
    """What the database stores and looks up for `token`.

    A plain SHA-256 is the right hash here, unlike for a password: the token is 256 bits
    from `secrets`, so there is no dictionary to try and a slow hash (bcrypt, Argon2)
    would only slow every request down without making a guess any likelier.
    """
    return hashlib.sha256(token.encode("ascii")).digest()


def new_token() -> str:
    """A fresh token (not stored: `mint` stores it)."""
    raw = base64.urlsafe_b64encode(secrets.token_bytes(_SECRET_BYTES)).rstrip(b"=").decode()
    return PREFIX + raw


async def mint(conn: Conn, order_id: uuid.UUID, *, purpose: Purpose, ttl_seconds: int) -> str:
    """Issue a token for `order_id`, valid for `ttl_seconds`, on the caller's connection
    (its transaction, if one is open: the token exists once that commits)."""
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive")
    token = new_token()
    await conn.execute(
        Q["insert_order_token"],
        {
            "token_hash": token_hash(token),
            "order_id": order_id,
            "purpose": purpose,
            "ttl_seconds": ttl_seconds,
        },
    )
    return token


async def verify(db: Database, token: str) -> Principal:
    """The order principal `token` speaks for; `InvalidToken` (reason `malformed`,
    `unknown`, `expired` or `revoked`) otherwise."""
    if not _TOKEN.fullmatch(token):
        raise InvalidToken("order token is malformed", reason="malformed")
    params = {"token_hash": token_hash(token)}
    if isinstance(db, AsyncConnectionPool):
        async with db.connection() as conn:
            cur = await conn.execute(Q["find_order_token"], params)
            row = await cur.fetchone()
    else:
        cur = await db.execute(Q["find_order_token"], params)
        row = await cur.fetchone()
    if row is None:
        raise InvalidToken("order token is not known", reason="unknown")
    order_id, revoked, expired = row
    if revoked:
        raise InvalidToken("order token was revoked", reason="revoked")
    if expired:
        raise InvalidToken("token has expired", reason="expired")
    return Principal(kind="order_token", subject=str(order_id), order_id=order_id)


async def revoke(
    conn: Conn, order_id: uuid.UUID, *, purpose: Purpose | None = None, reason: str
) -> int:
    """Revoke the order's live tokens (of `purpose`, or all); how many were revoked."""
    if not reason:
        raise ValueError("a revocation needs a reason")
    cur = await conn.execute(
        Q["revoke_order_tokens"], {"order_id": order_id, "purpose": purpose, "reason": reason}
    )
    return len(await cur.fetchall())


async def mint_order_token(
    db: Database,
    order_id: uuid.UUID,
    *,
    ttl_seconds: int = TOOL_TTL_SECONDS,
    purpose: Purpose = "checkout",
) -> str:
    """`mint` for tools and tests: on a pool, in a transaction of its own, committed."""
    if isinstance(db, AsyncConnectionPool):
        async with db.connection() as conn:
            return await mint(conn, order_id, purpose=purpose, ttl_seconds=ttl_seconds)
    return await mint(db, order_id, purpose=purpose, ttl_seconds=ttl_seconds)
