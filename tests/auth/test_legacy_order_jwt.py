"""Links emailed before stored order tokens (first-release order JWTs) keep working until
they expire, under every master key of the ring, and open only their own order."""

from __future__ import annotations

import time
import uuid
from typing import Any

import aiohttp
import jwt
import psycopg
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from harness import Served, bare_order

from bitloot.auth.legacy_order_jwt import is_legacy_order_token
from bitloot.resources import token_verifier
from bitloot.vault.crypto import LEGACY_ORDER_TOKEN_PURPOSE, MasterKeyRing, generate_master_key
from bitloot.web.context import RESOURCES

Conn = psycopg.AsyncConnection[Any]


def first_release_token(
    ring: MasterKeyRing, order_id: uuid.UUID, *, key_id: str | None = None, ttl: int = 600
) -> str:
    """An order token exactly as the first release minted it (auth/tokens.py before 0006)."""
    secret = ring.derived_key(LEGACY_ORDER_TOKEN_PURPOSE, key_id)
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"bitloot/order-access-token/v1"
    ).derive(secret)
    now = int(time.time())
    claims = {
        "typ": "bitloot-order",
        "order_id": str(order_id),
        "iat": now - 60,
        "exp": now + ttl,
        "iss": "bitloot",
        "aud": "bitloot-order",
    }
    return jwt.encode(claims, key, algorithm="HS256", headers={"kid": "bitloot-order-v1"})


async def status_of(api: Served, order_id: uuid.UUID, token: str) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{api.url}/orders/{order_id}", headers={"Authorization": f"Bearer {token}"}
        ) as resp,
    ):
        return resp.status


async def test_a_first_release_link_still_opens_its_order_and_only_it(
    api: Served, conn: Conn
) -> None:
    ring = api.app[RESOURCES].ring
    order_id = await bare_order(conn)
    other = await bare_order(conn, "eve@example.com")
    token = first_release_token(ring, order_id)
    assert await status_of(api, order_id, token) == 200
    assert await status_of(api, other, token) == 404


async def test_an_expired_or_forged_first_release_link_is_refused(api: Served, conn: Conn) -> None:
    ring = api.app[RESOURCES].ring
    order_id = await bare_order(conn)
    assert await status_of(api, order_id, first_release_token(ring, order_id, ttl=-10)) == 401
    stranger = MasterKeyRing.parse(generate_master_key("k1"))
    assert await status_of(api, order_id, first_release_token(stranger, order_id)) == 401


async def test_a_first_release_link_signed_under_an_older_key_of_the_ring_works(
    api: Served, conn: Conn
) -> None:
    # Step one of a rotation: a new key first, the link was signed under the old one.
    res = api.app[RESOURCES]
    assert res.ring.ids == ("k1",) and res.settings.master_keys is not None
    old_keys = res.settings.master_keys.get_secret_value()
    rotated = MasterKeyRing.parse(f"{generate_master_key('k2')},{old_keys}")
    res.tokens = token_verifier(res.settings, rotated)
    order_id = await bare_order(conn)
    assert (
        await status_of(api, order_id, first_release_token(rotated, order_id, key_id="k1")) == 200
    )


def test_a_header_that_is_not_ascii_is_not_taken_for_a_first_release_token() -> None:
    # Header bytes that are not UTF-8 reach the handler surrogate-escaped; PyJWT would
    # raise UnicodeEncodeError on them (a 500, found by Schemathesis).
    assert is_legacy_order_token("s*\udcd0") is False
    assert is_legacy_order_token("not-a-jwt") is False
