"""Every query of the vault, typed; the SQL itself lives in `queries.sql`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from psycopg import AsyncConnection

from bitloot.sqlfile import load_queries

QUERIES = load_queries(files("bitloot.vault") / "queries.sql")

Conn = AsyncConnection[Any]


@dataclass(frozen=True, slots=True)
class WrappedKeyRow:
    """A row of `key_delivery_logs`, reduced to what wrapping needs."""

    id: uuid.UUID
    order_id: uuid.UUID
    key_id: str
    master_key_id: str
    wrapped_data_key: bytes


async def count_to_rewrap(conn: Conn, active_id: str) -> int:
    """How many data keys are wrapped by a master key other than `active_id`."""
    cur = await conn.execute(QUERIES["count_to_rewrap"], {"active_id": active_id})
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def lock_rewrap_batch(
    conn: Conn, *, after: uuid.UUID, active_id: str, limit: int
) -> list[WrappedKeyRow]:
    """Lock (skipping rows others hold) the next `limit` rows past `after` to re-wrap."""
    cur = await conn.execute(
        QUERIES["lock_rewrap_batch"], {"after": after, "active_id": active_id, "limit": limit}
    )
    return [WrappedKeyRow(*row) for row in await cur.fetchall()]


async def rewrap_batch(
    conn: Conn, updates: Sequence[tuple[uuid.UUID, str, bytes]], *, new_master_key_id: str
) -> int:
    """Store new wrapped keys, given as ``(id, old master key id, wrapped)``; one statement."""
    cur = await conn.execute(
        QUERIES["rewrap_batch"],
        {
            "ids": [u[0] for u in updates],
            "old_master_key_ids": [u[1] for u in updates],
            "wrapped": [u[2] for u in updates],
            "new_master_key_id": new_master_key_id,
        },
    )
    return cur.rowcount


async def master_key_ids_in_use(conn: Conn) -> list[str]:
    """The distinct master key ids that wrap at least one stored data key or webhook
    signing secret."""
    cur = await conn.execute(QUERIES["master_key_ids_in_use"])
    return [str(row[0]) for row in await cur.fetchall()]


async def count_by_master_key(conn: Conn, ids: Sequence[str]) -> dict[str, int]:
    """How many data keys and webhook signing secrets each of `ids` wraps (ids that wrap
    none are absent)."""
    cur = await conn.execute(QUERIES["count_by_master_key"], {"ids": list(ids)})
    return {str(row[0]): int(row[1]) for row in await cur.fetchall()}


async def sample_wrapped_key(conn: Conn, master_key_id: str) -> WrappedKeyRow | None:
    """Any one stored data key wrapped by `master_key_id`, or None."""
    cur = await conn.execute(QUERIES["sample_wrapped_key"], {"master_key_id": master_key_id})
    row = await cur.fetchone()
    return WrappedKeyRow(*row) if row else None


async def canaries(conn: Conn, ids: Sequence[str]) -> dict[str, bytes]:
    """The stored canaries of the given master key ids."""
    cur = await conn.execute(QUERIES["canaries"], {"ids": list(ids)})
    return {str(row[0]): bytes(row[1]) for row in await cur.fetchall()}


async def insert_canary(conn: Conn, master_key_id: str, wrapped: bytes) -> bool:
    """Store a canary unless one exists; True when this call wrote it."""
    cur = await conn.execute(
        QUERIES["insert_canary"], {"master_key_id": master_key_id, "wrapped": wrapped}
    )
    return cur.rowcount == 1
