"""Every column of every table and view of ours has a comment (`\\d+ name` in psql shows
it), and so does every table and view: a column added without one fails here. procrastinate's
tables and yoyo's are not ours."""

from __future__ import annotations

import psycopg

OURS = """
    c.relnamespace = 'public'::regnamespace
    AND c.relkind IN ('r', 'p', 'v', 'm')
    AND c.relname NOT LIKE 'procrastinate%%'
    AND c.relname NOT LIKE '\\_yoyo%%'
    AND c.relname <> 'yoyo_lock'
"""


def test_every_column_of_every_table_and_view_has_a_comment(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        columns = conn.execute(
            f"""
            SELECT c.relname || '.' || a.attname, coalesce(col_description(c.oid, a.attnum), '')
              FROM pg_class c
              JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             WHERE {OURS}
             ORDER BY c.relname, a.attnum
            """
        ).fetchall()
    # The scan sees tables and views of ours, and nothing of procrastinate's.
    names = {name for name, _ in columns}
    assert {"orders.email", "needs_attention.why", "webhook_outcomes.meaning"} <= names
    assert not any(name.startswith(("procrastinate", "_yoyo")) for name in names)
    assert [name for name, comment in columns if not comment.strip()] == []


def test_every_table_and_view_has_a_comment(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        missing = conn.execute(
            f"""
            SELECT c.relname FROM pg_class c
             WHERE {OURS} AND coalesce(obj_description(c.oid, 'pg_class'), '') = ''
             ORDER BY 1
            """
        ).fetchall()
    assert [name for (name,) in missing] == []
