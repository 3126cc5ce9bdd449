"""The zero-downtime rules of deploy/PRODUCTION.md hold on the real tools: yoyo applies a
`-- transactional: false` file outside a transaction (so `CREATE INDEX CONCURRENTLY` runs),
and `CREATE OR REPLACE FUNCTION` drops a function's `SET` options (why an upgrade of
procrastinate must re-apply migration 0003's fetch plan)."""

from __future__ import annotations

import warnings
from pathlib import Path

import psycopg

from bitloot.db.migrate import _backend


def test_a_non_transactional_migration_builds_an_index_concurrently(
    db_url: str, tmp_path: Path
) -> None:
    from yoyo import read_migrations

    (tmp_path / "9001_concurrent_index.sql").write_text(
        "-- transactional: false\n"
        "-- An index built without blocking writes.\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS test_orders_email_idx ON orders (lower(email));\n"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        migrations = read_migrations(str(tmp_path))
    backend = _backend(db_url)
    try:
        with backend.lock():
            backend.apply_migrations(backend.to_apply(migrations))
    finally:
        backend.connection.close()
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'test_orders_email_idx'::regclass"
        ).fetchone()
    assert row == (True,)


def test_replacing_the_fetch_function_drops_its_plan_setting(db_url: str) -> None:
    fetch = "procrastinate_fetch_job_v2(character varying[], bigint)"
    with psycopg.connect(db_url, autocommit=True) as conn:
        (config,) = conn.execute(
            f"SELECT proconfig FROM pg_proc WHERE oid = '{fetch}'::regprocedure"
        ).fetchone() or (None,)
        assert config == ["enable_sort=off"]  # migration 0003
        (definition,) = conn.execute(
            f"SELECT pg_get_functiondef('{fetch}'::regprocedure)"
        ).fetchone() or ("",)
        # What a procrastinate migration does: the same function, without our SET.
        body = "\n".join(line for line in definition.splitlines() if "enable_sort" not in line)
        conn.execute(body)
        (after,) = conn.execute(
            f"SELECT proconfig FROM pg_proc WHERE oid = '{fetch}'::regprocedure"
        ).fetchone() or (None,)
    assert after is None
