"""Helpers of the endpoint tests: `bitloot webhooks ...` as a real process, what the
database holds (every row as text, to search for a secret), the audit rows."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bitloot.config import environ_without_bitloot

Conn = psycopg.AsyncConnection[Any]
WHSEC = "whsec_"


def bitloot(
    tmp_path: Path, db_url: str, master_keys: str | None, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run `python -m bitloot ARGS` against the test database, in a folder with no .env."""
    base = {**environ_without_bitloot(), "DATABASE_URL": db_url, "BITLOOT_LOG_FORMAT": "json"}
    if master_keys is not None:
        base["BITLOOT_MASTER_KEYS"] = master_keys
    return subprocess.run(
        [sys.executable, "-m", "bitloot", *args],
        cwd=tmp_path,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """The stdout of a command that must have succeeded."""
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


def usage_error(result: subprocess.CompletedProcess[str]) -> str:
    """The one stderr line of a command that must have failed as a usage error (exit 2)."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("bitloot: ")
    return line


def field(stdout: str, name: str) -> str:
    """The value of a `name  value` line that `webhooks add` / `rotate-secret` print."""
    for line in stdout.splitlines():
        if line.startswith(name + " "):
            return line[len(name) :].strip()
    raise AssertionError(f"no {name!r} line in {stdout!r}")


async def database_text(conn: Conn) -> str:
    """Every row of every table of the database, as text (bytea as hex), one per line."""
    cur = await conn.execute(
        "SELECT table_schema, table_name FROM information_schema.tables"
        " WHERE table_type = 'BASE TABLE'"
        " AND table_schema NOT IN ('pg_catalog', 'information_schema')"
    )
    lines = []
    for schema, table in await cur.fetchall():
        query = sql.SQL("SELECT t::text FROM {}.{} t").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        rows = await conn.execute(query)
        lines += [str(r[0]) for r in await rows.fetchall()]
    return "\n".join(lines)


async def audit_rows(conn: Conn) -> list[dict[str, Any]]:
    """The admin_audit_log rows of webhook endpoint actions, oldest first."""
    cur = await conn.execute(
        "SELECT admin_id, action, order_id, reason, details FROM admin_audit_log"
        " WHERE action LIKE 'webhook_endpoint.%' ORDER BY id"
    )
    names = ("admin_id", "action", "order_id", "reason", "details")
    return [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]


async def expired_order_event(conn: Conn) -> uuid.UUID:
    """An order that expires now (created -> expired): an `order.expired` event for every
    endpoint that wants it, pending."""
    cur = await conn.execute(
        "INSERT INTO orders (email, currency, total_amount) VALUES ('ada@example.com', 'eur',"
        " 9.99) RETURNING id"
    )
    row = await cur.fetchone()
    assert row is not None
    order_id = uuid.UUID(str(row[0]))
    await conn.execute("UPDATE orders SET status = 'expired' WHERE id = %s", (order_id,))
    return order_id
