"""`bitloot webhooks add|list|disable|enable|rotate-secret|remove` as real processes against
the test database: the secret printed once and stored only wrapped, every change audited,
bad input one line and exit status 2."""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from endpoints_support import (
    Conn,
    audit_rows,
    bitloot,
    database_text,
    expired_order_event,
    field,
    ok,
    usage_error,
)
from standardwebhooks.webhooks import Webhook

from bitloot.vault.crypto import MasterKeyRing, generate_master_key
from bitloot.webhooks.secrets import WrappedSecret, from_whsec, unwrap
from bitloot.webhooks.service import signing_secrets

# A public address literal: registration needs no DNS, and the default rules accept it.
PUBLIC_URL = "https://93.184.215.14/bitloot-hooks"
CLI_ACTOR = f"cli:{getpass.getuser()}"


@pytest.fixture
def master_keys() -> str:
    return generate_master_key("k1")


def signed_headers(raw: bytes, body: str) -> dict[str, str]:
    """Standard Webhooks headers for `body`, signed with the raw secret bytes."""
    msg_id, ts = "msg_test", str(int(time.time()))
    mac = hmac.new(raw, f"{msg_id}.{ts}.{body}".encode(), hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


async def stored_secrets(
    conn: Conn, endpoint_id: uuid.UUID
) -> list[tuple[WrappedSecret, datetime | None]]:
    cur = await conn.execute(
        "SELECT wrapped, master_key_id, expires_at FROM webhook_endpoint_secrets"
        " WHERE endpoint_id = %s ORDER BY id",
        (endpoint_id,),
    )
    return [(WrappedSecret(bytes(w), k), e) for w, k, e in await cur.fetchall()]


def assert_nowhere(text: str, secret: str) -> None:
    """Neither the whsec string, nor its base64, nor the raw bytes (hex, as bytea prints)."""
    raw = from_whsec(secret)
    assert secret not in text
    assert secret.removeprefix("whsec_") not in text
    assert raw.hex() not in text


def add(
    tmp_path: Path, db_url: str, master_keys: str, *args: str, **env: str
) -> tuple[uuid.UUID, str, str]:
    out = ok(bitloot(tmp_path, db_url, master_keys, "webhooks", "add", *args, **env))
    return uuid.UUID(field(out, "endpoint")), field(out, "secret"), out


async def test_add_prints_the_id_and_secret_once_and_stores_it_only_wrapped(
    tmp_path: Path, db_url: str, master_keys: str, conn: Conn
) -> None:
    endpoint_id, secret, out = add(
        tmp_path, db_url, master_keys, PUBLIC_URL, "--description", "shop front"
    )
    assert secret.startswith("whsec_")
    assert out.count(secret) == 1
    assert "shown only now" in out
    assert field(out, "events") == "all"

    # The printed secret is the stored one: a signature made with what the database holds
    # (unwrapped with the master key) verifies with the printed secret, by the reference
    # Standard Webhooks library.
    ((wrapped, expires_at),) = await stored_secrets(conn, endpoint_id)
    assert expires_at is None
    assert wrapped.master_key_id == "k1"
    raw = unwrap(MasterKeyRing.parse(master_keys), endpoint_id, wrapped)
    body = json.dumps({"type": "order.paid", "data": {}})
    assert Webhook(secret).verify(body, signed_headers(raw, body)) == json.loads(body)

    listed = ok(bitloot(tmp_path, db_url, master_keys, "webhooks", "list"))
    (line,) = listed.splitlines()
    assert str(endpoint_id) in line and PUBLIC_URL in line and "enabled" in line
    assert "secret age" in line and f"by {CLI_ACTOR}" in line
    assert_nowhere(listed, secret)
    assert_nowhere(await database_text(conn), secret)

    cur = await conn.execute(
        "SELECT url, event_types, description, enabled, created_by FROM webhook_endpoints"
    )
    assert await cur.fetchall() == [(PUBLIC_URL, None, "shop front", True, CLI_ACTOR)]
    (audit,) = await audit_rows(conn)
    assert audit["admin_id"] == CLI_ACTOR
    assert audit["action"] == "webhook_endpoint.add"
    assert audit["order_id"] is None
    assert audit["reason"] == "cli"
    assert audit["details"]["endpointId"] == str(endpoint_id)
    assert audit["details"]["url"] == PUBLIC_URL


async def test_list_needs_no_master_key_and_says_when_there_is_nothing(
    tmp_path: Path, db_url: str
) -> None:
    out = ok(bitloot(tmp_path, db_url, None, "webhooks", "list"))
    assert out.strip() == "no webhook endpoints: add one with `bitloot webhooks add URL`"


async def test_disable_and_enable_show_in_list_and_are_audited(
    tmp_path: Path, db_url: str, master_keys: str, conn: Conn
) -> None:
    endpoint_id, _, _ = add(
        tmp_path, db_url, master_keys, PUBLIC_URL, "--events", "order.paid,order.fulfilled"
    )
    eid = str(endpoint_id)
    ok(bitloot(tmp_path, db_url, None, "webhooks", "disable", eid, "--reason", "shop moving"))
    listed = ok(bitloot(tmp_path, db_url, None, "webhooks", "list"))
    assert "disabled (shop moving)" in listed
    assert "events order.paid,order.fulfilled" in listed

    ok(bitloot(tmp_path, db_url, None, "webhooks", "enable", eid))
    listed = ok(bitloot(tmp_path, db_url, None, "webhooks", "list"))
    assert "  enabled  " in listed and "disabled" not in listed
    cur = await conn.execute(
        "SELECT enabled, disabled_at, disabled_reason FROM webhook_endpoints WHERE id = %s",
        (endpoint_id,),
    )
    assert await cur.fetchone() == (True, None, None)

    audits = await audit_rows(conn)
    assert [(a["action"], a["reason"]) for a in audits] == [
        ("webhook_endpoint.add", "cli"),
        ("webhook_endpoint.disable", "shop moving"),
        ("webhook_endpoint.enable", "cli"),
    ]
    assert audits[2]["details"]["disabledReason"] == "shop moving"
    assert {a["admin_id"] for a in audits} == {CLI_ACTOR}


async def test_rotate_secret_prints_a_new_one_and_the_old_one_signs_until_it_expires(
    tmp_path: Path, db_url: str, master_keys: str, conn: Conn
) -> None:
    ring = MasterKeyRing.parse(master_keys)
    endpoint_id, old, _ = add(tmp_path, db_url, master_keys, PUBLIC_URL)
    before = datetime.now(UTC)
    out = ok(
        bitloot(
            tmp_path,
            db_url,
            master_keys,
            "webhooks",
            "rotate-secret",
            str(endpoint_id),
            BITLOOT_WEBHOOK_SECRET_OVERLAP="3600",
        )
    )
    new = field(out, "secret")
    assert new.startswith("whsec_") and new != old
    assert out.count(new) == 1 and old not in out
    assert "shown only now" in out and "keeps signing until" in out

    (_, old_expiry), (_, new_expiry) = await stored_secrets(conn, endpoint_id)
    assert new_expiry is None
    assert old_expiry is not None
    assert before + timedelta(seconds=3590) < old_expiry < before + timedelta(seconds=3700)
    # Both sign (newest first) until the old one expires.
    signing = await signing_secrets(conn, ring, endpoint_id)
    assert signing == [from_whsec(new), from_whsec(old)]
    listed = ok(bitloot(tmp_path, db_url, None, "webhooks", "list"))
    assert "(+1 old secret(s) signing until" in listed
    assert_nowhere(listed, old)
    assert_nowhere(listed, new)
    text = await database_text(conn)
    assert_nowhere(text, old)
    assert_nowhere(text, new)

    await conn.execute(
        "UPDATE webhook_endpoint_secrets SET expires_at = now() - interval '1 second'"
        " WHERE endpoint_id = %s AND expires_at IS NOT NULL",
        (endpoint_id,),
    )
    assert await signing_secrets(conn, ring, endpoint_id) == [from_whsec(new)]
    assert "old secret" not in ok(bitloot(tmp_path, db_url, None, "webhooks", "list"))

    rotate = (await audit_rows(conn))[-1]
    assert rotate["action"] == "webhook_endpoint.rotate_secret"
    assert rotate["details"]["previousSecretExpiresAt"] is not None
    assert_nowhere(json.dumps(rotate), old)
    assert_nowhere(json.dumps(rotate), new)


async def test_remove_fails_pending_deliveries_and_the_endpoint_is_gone(
    tmp_path: Path, db_url: str, master_keys: str, conn: Conn
) -> None:
    endpoint_id, _, _ = add(tmp_path, db_url, master_keys, PUBLIC_URL, "--events", "order.expired")
    await expired_order_event(conn)
    cur = await conn.execute(
        "SELECT status FROM webhook_deliveries WHERE endpoint_id = %s", (endpoint_id,)
    )
    assert await cur.fetchall() == [("pending",)]

    out = ok(bitloot(tmp_path, db_url, None, "webhooks", "remove", str(endpoint_id)))
    assert "1 pending deliveries failed" in out
    cur = await conn.execute(
        "SELECT status, last_error FROM webhook_deliveries WHERE endpoint_id = %s", (endpoint_id,)
    )
    assert await cur.fetchall() == [("failed", "endpoint removed")]
    cur = await conn.execute(
        "SELECT removed_at IS NOT NULL FROM webhook_endpoints WHERE id = %s", (endpoint_id,)
    )
    assert await cur.fetchone() == (True,)
    assert "no webhook endpoints" in ok(bitloot(tmp_path, db_url, None, "webhooks", "list"))
    # A removed endpoint takes no new events...
    await expired_order_event(conn)
    cur = await conn.execute(
        "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = %s", (endpoint_id,)
    )
    assert await cur.fetchone() == (1,)
    # ... and no more changes.
    line = usage_error(bitloot(tmp_path, db_url, None, "webhooks", "enable", str(endpoint_id)))
    assert "no such webhook endpoint" in line
    assert (await audit_rows(conn))[-1]["action"] == "webhook_endpoint.remove"
    assert (await audit_rows(conn))[-1]["details"]["failedDeliveries"] == 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("add", "http://93.184.215.14/hooks"), "must be https"),
        (("add", "https://127.0.0.1/hooks"), "127.0.0.1 is not a public address"),
        (("add", PUBLIC_URL, "--events", "order.paid,order.shipped"), "'order.shipped'"),
        (("add", PUBLIC_URL, "--events", ""), "at least one event type"),
        (("add", PUBLIC_URL, "--description", "x" * 501), "longer than 500"),
        (("disable", "not-an-id"), "is not an endpoint id"),
        (("enable", str(uuid.uuid4())), "no such webhook endpoint"),
        (("rotate-secret", str(uuid.uuid4())), "no such webhook endpoint"),
        (("remove", str(uuid.uuid4())), "no such webhook endpoint"),
    ],
)
async def test_bad_input_is_one_line_and_exit_status_2(
    tmp_path: Path,
    db_url: str,
    master_keys: str,
    conn: Conn,
    args: tuple[str, ...],
    expected: str,
) -> None:
    line = usage_error(bitloot(tmp_path, db_url, master_keys, "webhooks", *args))
    assert expected in line
    cur = await conn.execute("SELECT count(*) FROM webhook_endpoints")
    assert await cur.fetchone() == (0,)
    assert await audit_rows(conn) == []


async def test_add_and_rotate_need_the_master_keys(tmp_path: Path, db_url: str) -> None:
    for args in (("add", PUBLIC_URL), ("rotate-secret", str(uuid.uuid4()))):
        line = usage_error(bitloot(tmp_path, db_url, None, "webhooks", *args))
        assert "BITLOOT_MASTER_KEYS" in line
