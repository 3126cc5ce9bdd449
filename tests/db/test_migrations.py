"""Migrations: apply on an empty database, re-run as a no-op, match the reviewed snapshot."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from bitloot.db.migrate import apply_migrations, migration_states, pending_migrations
from bitloot.db.snapshot import dump_schema, snapshot_path


@pytest.fixture
def empty_db(pg_server: Any) -> Iterator[str]:
    with psycopg.connect(pg_server.url("postgres"), autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS migrate_scratch WITH (FORCE)")
        admin.execute("CREATE DATABASE migrate_scratch")
    yield pg_server.url("migrate_scratch")
    with psycopg.connect(pg_server.url("postgres"), autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS migrate_scratch WITH (FORCE)")


def test_migrations_apply_then_rerun_is_a_noop_and_match_snapshot(empty_db: str) -> None:
    assert pending_migrations(empty_db) == [s.id for s in migration_states(empty_db)]
    applied = apply_migrations(empty_db)
    assert applied and applied[0].startswith("0001_procrastinate")
    assert apply_migrations(empty_db) == []
    assert pending_migrations(empty_db) == []

    actual = dump_schema(empty_db)
    expected = snapshot_path().read_text()
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                "sql/schema.snapshot.sql",
                "migrated schema",
                n=2,
            )
        )
        pytest.fail(
            "the migrations drifted from sql/schema.snapshot.sql; review the diff and run "
            f"`make schema-snapshot`:\n{diff[:4000]}"
        )


def test_every_table_and_view_has_a_comment(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            """
            SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v')
               AND c.relname NOT LIKE 'procrastinate%%' AND c.relname NOT LIKE '\\_yoyo%%'
               AND c.relname <> 'yoyo_lock'
               AND obj_description(c.oid, 'pg_class') IS NULL
            """
        ).fetchall()
    assert rows == []
