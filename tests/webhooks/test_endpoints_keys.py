"""Webhook signing secrets and the master keys: `bitloot keys rotate` re-wraps them under
the newest key (they still open to the same bytes), and start-up refuses a key list that
lacks a key a stored secret needs. And the event names agree with the migration."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from endpoints_support import Conn, bitloot, field, ok

from bitloot.vault.canary import check_master_keys
from bitloot.vault.crypto import MasterKeyRing, VaultError, generate_master_key
from bitloot.webhooks.secrets import WrappedSecret, from_whsec, unwrap
from bitloot.webhooks.service import (
    EVENT_TYPES,
    register_endpoint,
    rewrap_endpoint_secrets,
)

PUBLIC_URL = "https://93.184.215.14/bitloot-hooks"


async def wrapped_secrets(conn: Conn) -> list[tuple[uuid.UUID, WrappedSecret]]:
    cur = await conn.execute(
        "SELECT endpoint_id, wrapped, master_key_id FROM webhook_endpoint_secrets ORDER BY id"
    )
    return [(e, WrappedSecret(bytes(w), k)) for e, w, k in await cur.fetchall()]


async def test_keys_rotate_rewraps_every_webhook_secret_to_the_same_bytes(
    tmp_path: Path, db_url: str, conn: Conn
) -> None:
    k1 = generate_master_key("k1")
    first = ok(bitloot(tmp_path, db_url, k1, "webhooks", "add", PUBLIC_URL))
    endpoint_id = field(first, "endpoint")
    rotated = ok(bitloot(tmp_path, db_url, k1, "webhooks", "rotate-secret", endpoint_id))
    other = ok(bitloot(tmp_path, db_url, k1, "webhooks", "add", PUBLIC_URL + "/2"))
    ok(bitloot(tmp_path, db_url, None, "webhooks", "remove", field(other, "endpoint")))
    printed = [field(first, "secret"), field(rotated, "secret"), field(other, "secret")]
    assert {s.master_key_id for _, s in await wrapped_secrets(conn)} == {"k1"}

    both = f"{generate_master_key('k2')},{k1}"
    out = ok(bitloot(tmp_path, db_url, both, "keys", "rotate"))
    assert "re-wrapped 3 webhook signing secret(s) under master key 'k2'" in out

    # The newest key alone opens every secret (expired and removed ones too), to the bytes
    # that were printed.
    k2_only = MasterKeyRing.parse(both.split(",", maxsplit=1)[0])
    stored = await wrapped_secrets(conn)
    assert {s.master_key_id for _, s in stored} == {"k2"}
    assert [unwrap(k2_only, e, s) for e, s in stored] == [from_whsec(p) for p in printed]
    await check_master_keys(conn, k2_only)  # k1 is no longer needed

    again = ok(bitloot(tmp_path, db_url, both, "keys", "rotate"))
    assert "re-wrapped 0 webhook signing secret(s)" in again


async def test_start_up_refuses_keys_that_lack_one_a_webhook_secret_needs(conn: Conn) -> None:
    k1_spec, k2_spec = generate_master_key("k1"), generate_master_key("k2")
    async with conn.transaction():
        await register_endpoint(
            conn,
            MasterKeyRing.parse(k1_spec),
            url=PUBLIC_URL,
            events=None,
            description=None,
            created_by="test",
            allow_private=False,
        )
    k2_only = MasterKeyRing.parse(k2_spec)
    with pytest.raises(VaultError) as refused:
        await check_master_keys(conn, k2_only)
    assert "webhook secrets" in str(refused.value)
    assert "1 by 'k1'" in str(refused.value)

    async with conn.transaction():
        assert await rewrap_endpoint_secrets(conn, MasterKeyRing.parse(f"{k2_spec},{k1_spec}")) == 1
    await check_master_keys(conn, k2_only)


async def test_event_types_are_those_of_the_migration(conn: Conn) -> None:
    cur = await conn.execute(
        "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c"
        " WHERE c.conrelid = 'webhook_messages'::regclass AND c.contype = 'c'"
        " AND pg_get_constraintdef(c.oid) LIKE '%event_type%'"
    )
    (definition,) = (row[0] for row in await cur.fetchall())
    assert set(re.findall(r"'(order\.[a-z_]+)'", definition)) == set(EVENT_TYPES)
