"""Master key rotation, start-up canaries, and the named-query loader, on real PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from bitloot.sqlfile import QueryFileError, load_queries, parse_queries
from bitloot.vault import MasterKeyRing, VaultError, generate_master_key, open_blob, seal_key
from bitloot.vault.canary import check_master_keys
from bitloot.vault.crypto import unwrap_data_key
from bitloot.vault.rotate import rotate_canaries, rotate_data_keys, run_rotate

Conn = psycopg.AsyncConnection[Any]

K1 = generate_master_key("k1")
K2 = generate_master_key("k2")
Blobs = dict[tuple[uuid.UUID, str], bytes]


class Interrupted(Exception):
    """Stands in for a crash or an operator's Ctrl-C between two batches."""


async def seal_rows(conn: Conn, ring: MasterKeyRing, n: int, *, per_order: int = 100) -> Blobs:
    """Insert `n` key delivery rows sealed under `ring`; return their blobs by (order, key)."""
    blobs: Blobs = {}
    rows = []
    for start in range(0, n, per_order):
        cur = await conn.execute(
            "INSERT INTO orders (email, currency, total_amount)"
            " VALUES ('buyer@example.com', 'eur', 10) RETURNING id"
        )
        (order_id,) = await cur.fetchone()  # type: ignore[misc]
        for i in range(start, min(n, start + per_order)):
            key_id = f"key-{i}"
            sealed = seal_key(f"GAME-{i}".encode(), order_id=order_id, key_id=key_id, ring=ring)
            blobs[(order_id, key_id)] = sealed.blob
            rows.append(
                (
                    order_id,
                    key_id,
                    f"orders/{order_id}/{key_id}.bin",
                    sealed.wrapped_data_key,
                    sealed.master_key_id,
                )
            )
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO key_delivery_logs"
            " (order_id, key_id, object_key, content_type, wrapped_data_key, master_key_id)"
            " VALUES (%s, %s, %s, 'text/plain', %s, %s)",
            rows,
        )
    return blobs


async def master_key_counts(conn: Conn) -> dict[str, int]:
    cur = await conn.execute(
        "SELECT master_key_id, count(*) FROM key_delivery_logs GROUP BY 1 ORDER BY 1"
    )
    return {row[0]: row[1] for row in await cur.fetchall()}


async def assert_all_open_with(conn: Conn, ring: MasterKeyRing, blobs: Blobs) -> None:
    cur = await conn.execute(
        "SELECT order_id, key_id, master_key_id, wrapped_data_key FROM key_delivery_logs"
    )
    rows = await cur.fetchall()
    assert len(rows) == len(blobs)
    for order_id, key_id, master_key_id, wrapped in rows:
        data_key = unwrap_data_key(
            wrapped, master_key_id=master_key_id, order_id=order_id, key_id=key_id, ring=ring
        )
        plain = open_blob(blobs[(order_id, key_id)], data_key, order_id=order_id, key_id=key_id)
        assert plain == f"GAME-{key_id.removeprefix('key-')}".encode()


async def test_rotation_rewraps_every_row_under_the_new_key(conn: Conn) -> None:
    blobs = await seal_rows(conn, MasterKeyRing.parse(K1), 2000)
    seen: list[tuple[int, int]] = []

    rewrapped = await rotate_data_keys(
        conn,
        MasterKeyRing.parse(f"{K2},{K1}"),
        batch_size=300,
        progress=lambda d, t: seen.append((d, t)),
    )

    assert rewrapped == 2000
    assert await master_key_counts(conn) == {"k2": 2000}
    await assert_all_open_with(conn, MasterKeyRing.parse(K2), blobs)
    assert len(seen) == 7  # ceil(2000 / 300) batches
    assert seen[-1] == (2000, 2000)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


async def test_second_rotation_does_nothing(conn: Conn) -> None:
    await seal_rows(conn, MasterKeyRing.parse(K1), 50)
    ring = MasterKeyRing.parse(f"{K2},{K1}")
    assert await rotate_data_keys(conn, ring, batch_size=20) == 50
    seen: list[tuple[int, int]] = []
    assert await rotate_data_keys(conn, ring, progress=lambda d, t: seen.append((d, t))) == 0
    assert seen == []


async def test_interrupted_rotation_resumes_where_it_stopped(conn: Conn) -> None:
    blobs = await seal_rows(conn, MasterKeyRing.parse(K1), 1000)
    ring = MasterKeyRing.parse(f"{K2},{K1}")
    batches = 0

    def crash_after_two(done: int, total: int) -> None:
        nonlocal batches
        batches += 1
        if batches == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        await rotate_data_keys(conn, ring, batch_size=300, progress=crash_after_two)
    assert await master_key_counts(conn) == {"k1": 400, "k2": 600}
    # Both keys still work during the half-way state: readers are never stuck.
    await assert_all_open_with(conn, ring, blobs)

    assert await rotate_data_keys(conn, ring, batch_size=300) == 400
    assert await master_key_counts(conn) == {"k2": 1000}
    await assert_all_open_with(conn, MasterKeyRing.parse(K2), blobs)


async def test_rows_locked_by_a_writer_are_skipped_not_waited_for(conn: Conn, db_url: str) -> None:
    blobs = await seal_rows(conn, MasterKeyRing.parse(K1), 30)
    ring = MasterKeyRing.parse(f"{K2},{K1}")
    async with await psycopg.AsyncConnection.connect(db_url) as writer:
        await writer.execute("SELECT id FROM key_delivery_logs WHERE key_id = 'key-7' FOR UPDATE")
        assert await rotate_data_keys(conn, ring, batch_size=8) == 29
        await writer.rollback()
    assert await master_key_counts(conn) == {"k1": 1, "k2": 29}
    assert await rotate_data_keys(conn, ring, batch_size=8) == 1
    await assert_all_open_with(conn, MasterKeyRing.parse(K2), blobs)


async def test_rotation_refuses_to_run_inside_a_transaction(conn: Conn) -> None:
    async with conn.transaction():
        with pytest.raises(VaultError, match="outside a transaction"):
            await rotate_data_keys(conn, MasterKeyRing.parse(K1))


async def test_rotation_names_a_master_key_missing_from_the_ring(conn: Conn) -> None:
    await seal_rows(conn, MasterKeyRing.parse(K1), 3)
    with pytest.raises(VaultError, match="'k1' is not in BITLOOT_MASTER_KEYS"):
        await rotate_data_keys(conn, MasterKeyRing.parse(K2))
    assert await master_key_counts(conn) == {"k1": 3}


async def test_check_master_keys_writes_the_active_canary_once(conn: Conn) -> None:
    ring = MasterKeyRing.parse(f"{K2},{K1}")
    await check_master_keys(conn, ring)
    await check_master_keys(conn, ring)
    cur = await conn.execute("SELECT master_key_id FROM vault_canaries")
    assert [row[0] for row in await cur.fetchall()] == ["k2"]


async def test_check_master_keys_rejects_another_key_under_a_known_id(conn: Conn) -> None:
    await check_master_keys(conn, MasterKeyRing.parse(K1))
    impostor = "k1:" + K2.partition(":")[2]
    with pytest.raises(
        VaultError, match="master key 'k1' does not match the key that wrote the canary"
    ) as info:
        await check_master_keys(conn, MasterKeyRing.parse(impostor))
    assert K1.partition(":")[2] not in str(info.value)
    assert K2.partition(":")[2] not in str(info.value)


async def test_check_master_keys_tries_a_key_without_canary_on_stored_data(conn: Conn) -> None:
    await seal_rows(conn, MasterKeyRing.parse(K1), 2)  # written before canaries existed
    impostor = "k1:" + K2.partition(":")[2]
    with pytest.raises(VaultError, match="master key 'k1' does not match the key that wrote"):
        await check_master_keys(conn, MasterKeyRing.parse(impostor))
    await check_master_keys(conn, MasterKeyRing.parse(K1))


async def test_check_master_keys_names_missing_ids_and_their_counts(conn: Conn) -> None:
    await seal_rows(conn, MasterKeyRing.parse(K1), 5)
    with pytest.raises(VaultError, match=r"5 by 'k1'"):
        await check_master_keys(conn, MasterKeyRing.parse(K2))
    cur = await conn.execute("SELECT count(*) FROM vault_canaries")
    assert (await cur.fetchone()) == (0,)  # nothing written for a refused configuration


async def test_rotate_canaries_reports_keys_that_can_be_retired(conn: Conn) -> None:
    await seal_rows(conn, MasterKeyRing.parse(K1), 5)
    ring = MasterKeyRing.parse(f"{K2},{K1}")
    assert await rotate_canaries(conn, ring) == []
    await rotate_data_keys(conn, ring)
    assert await rotate_canaries(conn, ring) == ["k1"]
    await check_master_keys(conn, MasterKeyRing.parse(K2))


async def test_run_rotate_shows_progress_and_returns_the_count(
    conn: Conn, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    blobs = await seal_rows(conn, MasterKeyRing.parse(K1), 120)
    await check_master_keys(conn, MasterKeyRing.parse(K1))

    assert await run_rotate(db_url, MasterKeyRing.parse(f"{K2},{K1}"), batch_size=50) == 120

    err = capsys.readouterr().err
    assert "120/120" in err
    await assert_all_open_with(conn, MasterKeyRing.parse(K2), blobs)
    cur = await conn.execute("SELECT master_key_id FROM vault_canaries ORDER BY 1")
    assert [row[0] for row in await cur.fetchall()] == ["k1", "k2"]


def test_query_file_blocks_load_by_name(tmp_path: Any) -> None:
    path = tmp_path / "q.sql"
    path.write_text(
        "-- a file comment\n\n-- name: one\n-- 100% a comment, dropped\nSELECT 1;\n\n"
        "--name: two_lines\nSELECT 'a'\n  || 'b';\n"
    )
    assert load_queries(path) == {"one": "SELECT 1;", "two_lines": "SELECT 'a'\n  || 'b';"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("SELECT 1;\n-- name: a\nSELECT 2;", "before the first"),
        ("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;", "defined twice"),
        ("-- name: a\n-- only a comment\n-- name: b\nSELECT 2;", "'a' is empty"),
        ("-- name: Bad-Name\nSELECT 1;", "bad query name"),
    ],
)
def test_query_file_errors_say_where(text: str, message: str) -> None:
    with pytest.raises(QueryFileError, match=message):
        parse_queries(text, source="x.sql")


def test_vault_queries_all_load() -> None:
    from bitloot.vault.repository import QUERIES

    assert {"lock_rewrap_batch", "rewrap_batch", "insert_canary"} <= set(QUERIES)
