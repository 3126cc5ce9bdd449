"""The database roles (sql/migrations/0009_roles.sql), against the real PostgreSQL: each right
each role needs, and each refusal, proven by logging in as a member of the role.

`t_app` is a login IN ROLE bitloot_app (what `serve` and `worker` log in as in production),
`t_auditor` one IN ROLE bitloot_auditor. The embedded server trusts local connections, so
the passwords are set as in production but not checked here.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from harness import COVERING_PAYMENT
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bitloot.cli import main
from bitloot.db.embedded import ensure_embedded_server, stop_embedded_server
from bitloot.db.migrate import roles_sql
from bitloot.sim.kinguin_catalog import TEXT_PRODUCT_ID

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from stack import Stack

INSUFFICIENT_PRIVILEGE = "42501"
APPEND_ONLY = ["order_events", "key_access_events", "admin_audit_log", "kinguin_calls"]
# What the auditor may not read: key material, what may carry it, what opens an order.
AUDITOR_HIDDEN = {
    "key_delivery_logs.wrapped_data_key",
    "webhook_endpoint_secrets.wrapped",
    "webhook_events.raw_body",
    "order_access_tokens.token_hash",
    "vault_canaries.master_key_id",
    "vault_canaries.wrapped",
    "vault_canaries.created_at",
    "rate_limit_buckets.bucket",
    "rate_limit_buckets.tat",
}
AUDIT_VIEWS = [
    "delivery_audit_trail",
    "payment_audit",
    "fulfillment_timeline",
    "key_access_log",
    "stuck_orders",
    "failed_jobs",
    "daily_sales",
    "needs_attention",
]
OURS = (
    "c.relnamespace = 'public'::regnamespace AND c.relname NOT LIKE 'procrastinate%%'"
    " AND c.relname NOT LIKE '\\_yoyo%%' AND c.relname <> 'yoyo_lock'"
)


@pytest.fixture(scope="session")
def logins(pg_server: Any) -> dict[str, str]:
    """Two logins on the test server, one per group role (roles belong to the cluster)."""
    passwords = {"t_app": "app-password", "t_auditor": "auditor-password"}
    with psycopg.connect(pg_server.url("postgres"), autocommit=True) as admin:
        for login, group in (("t_app", "bitloot_app"), ("t_auditor", "bitloot_auditor")):
            if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,)).fetchone():
                continue
            admin.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                    sql.Identifier(login), sql.Literal(passwords[login]), sql.Identifier(group)
                )
            )
    return passwords


def login_url(db_url: str, login: str, password: str) -> str:
    """The same server and database as `db_url`, logged in as `login`."""
    return make_conninfo(db_url, user=login, password=password)


@pytest.fixture
def app_url(db_url: str, logins: dict[str, str]) -> str:
    return login_url(db_url, "t_app", logins["t_app"])


@pytest.fixture
def auditor_url(db_url: str, logins: dict[str, str]) -> str:
    return login_url(db_url, "t_auditor", logins["t_auditor"])


def refused(url: str, statement: str, params: Any = None) -> str:
    """Run `statement` as the URL's login and return the SQLSTATE it failed with."""
    with psycopg.connect(url) as conn:
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(statement, params)
    return str(caught.value.sqlstate)


def our_tables(db_url: str) -> list[str]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            f"SELECT c.relname FROM pg_class c WHERE c.relkind = 'r' AND {OURS} ORDER BY 1"
        ).fetchall()
    return [name for (name,) in rows]


def seed(db_url: str) -> uuid.UUID:
    """As the owner: one product and one paid order with a stored key and a flagged IPN."""
    order_id = uuid.uuid4()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO products (product_id, name, price, currency, max_cost)"
            " VALUES ('roles-p', 'Roles', 10, 'eur', 8) ON CONFLICT DO NOTHING"
        )
        conn.execute(
            "INSERT INTO orders (id, email, currency, total_amount)"
            " VALUES (%s, 'ada@example.com', 'eur', 10)",
            (order_id,),
        )
        conn.execute("UPDATE orders SET status = 'waiting' WHERE id = %s", (order_id,))
        conn.execute(COVERING_PAYMENT, (order_id,))
        conn.execute("UPDATE orders SET status = 'paid' WHERE id = %s", (order_id,))
        conn.execute(
            "INSERT INTO key_delivery_logs (order_id, key_id, object_key, content_type,"
            " wrapped_data_key, master_key_id) VALUES (%s, 'k-1', %s, 'text/plain', '\\x00', 'k1')",
            (order_id, f"keys/{order_id}/k-1"),
        )
        conn.execute(
            "INSERT INTO webhook_events (provider, dedup_key, event_type, external_id, order_id,"
            " raw_body, needs_attention) VALUES ('nowpayments', %s, 'finished', '1', %s,"
            ' \'{"payment_status": "finished"}\', true)',
            (f"dedup-{order_id}", order_id),
        )
    return order_id


# --- bitloot_app: what serve and worker need --------------------------------------------


def test_app_creates_an_order_moves_it_legally_and_defers_a_job(app_url: str) -> None:
    order_id = uuid.uuid4()
    with psycopg.connect(app_url) as conn:
        conn.execute(
            "INSERT INTO products (product_id, name, price, currency, max_cost)"
            " VALUES ('roles-app', 'App', 10, 'eur', 8)"
        )
        conn.execute(
            "INSERT INTO orders (id, email, currency, total_amount)"
            " VALUES (%s, 'ada@example.com', 'eur', 10)",
            (order_id,),
        )
        conn.execute(
            "INSERT INTO order_items (order_id, product_id, qty, unit_price, max_cost, name)"
            " VALUES (%s, 'roles-app', 1, 10, 8, 'A game')",
            (order_id,),
        )
        conn.execute("SELECT set_config('bitloot.actor', 'api', true)")
        conn.execute("UPDATE orders SET status = 'waiting' WHERE id = %s", (order_id,))
        [job_ids] = conn.execute(
            "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW('fulfillment', 'fulfill_order', 0,"
            " %s, NULL, %s::jsonb, NULL)::procrastinate_job_to_defer_v1])",
            (f"order:{order_id}", f'{{"order_id": "{order_id}"}}'),
        ).fetchone() or [None]
        assert job_ids and len(job_ids) == 1
        events = conn.execute(
            "SELECT from_status, to_status, actor FROM order_events WHERE order_id = %s"
            " ORDER BY id",
            (order_id,),
        ).fetchall()
    # Without bitloot.actor the trigger names the login itself.
    assert events == [(None, "created", "sql:t_app"), ("created", "waiting", "api")]
    # The state machine still guards the application's moves.
    illegal = "UPDATE orders SET status = 'fulfilled' WHERE id = %s"
    assert refused(app_url, illegal, (order_id,)) == "BL001"


def test_app_runs_a_job_through_procrastinates_functions(app_url: str) -> None:
    with psycopg.connect(app_url) as conn:
        [worker_id] = conn.execute("SELECT procrastinate_register_worker_v1()").fetchone() or [0]
        conn.execute(
            "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW('maintenance', 'reconcile', 0, NULL,"
            " NULL, '{}'::jsonb, NULL)::procrastinate_job_to_defer_v1])"
        )
        job = conn.execute(
            "SELECT id FROM procrastinate_fetch_job_v2(ARRAY['maintenance'], %s)", (worker_id,)
        ).fetchone()
        assert job is not None and job[0] is not None
        conn.execute("SELECT procrastinate_finish_job_v1(%s, 'succeeded', false)", (job[0],))
        conn.execute("DELETE FROM procrastinate_jobs WHERE id = %s", (job[0],))
        conn.execute("SELECT procrastinate_unregister_worker_v1(%s)", (worker_id,))


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE orders DISABLE TRIGGER ALL",
        "ALTER TABLE orders DISABLE TRIGGER orders_status_guard",
        "ALTER TABLE order_events DISABLE TRIGGER order_events_append_only",
        "TRUNCATE orders",
        "TRUNCATE order_events",
        "DROP TABLE orders",
        "DROP VIEW needs_attention",
        "DROP FUNCTION bitloot_orders_status_guard() CASCADE",
        "DELETE FROM orders",
        "DELETE FROM payments",
        "DELETE FROM key_delivery_logs",
        "CREATE TABLE app_made (id int)",
        "ALTER TABLE orders ADD COLUMN sneaky text",
        "INSERT INTO order_status_transitions VALUES ('fulfilled', 'created')",
        "UPDATE webhook_outcomes SET meaning = 'x'",
        "SELECT bitloot_grant_roles()",
        "CREATE ROLE app_made_role",
    ],
)
def test_app_is_refused_ddl_and_destructive_statements(app_url: str, statement: str) -> None:
    assert refused(app_url, statement) == INSUFFICIENT_PRIVILEGE


@pytest.mark.parametrize("table", APPEND_ONLY)
def test_app_cannot_rewrite_the_append_only_logs(app_url: str, table: str) -> None:
    """Refused by privilege now, before the BL002 trigger is even reached."""
    assert refused(app_url, f"DELETE FROM {table}") == INSUFFICIENT_PRIVILEGE
    assert refused(app_url, f"UPDATE {table} SET order_id = order_id") == INSUFFICIENT_PRIVILEGE


def test_app_owns_nothing_and_may_truncate_nothing(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        owned = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner"
            " WHERE r.rolname IN ('bitloot_app', 't_app', 'bitloot_auditor', 't_auditor')"
        ).fetchall()
        truncatable = conn.execute(
            "SELECT c.relname FROM pg_class c WHERE c.relkind = 'r'"
            " AND c.relnamespace = 'public'::regnamespace"
            " AND has_table_privilege('bitloot_app', c.oid, 'TRUNCATE')"
        ).fetchall()
        deletable = conn.execute(
            f"SELECT c.relname FROM pg_class c WHERE c.relkind = 'r' AND {OURS}"
            " AND has_table_privilege('bitloot_app', c.oid, 'DELETE') ORDER BY 1"
        ).fetchall()
    assert owned == []
    assert truncatable == []
    assert [name for (name,) in deletable] == ["rate_limit_buckets"]


# --- bitloot_auditor: read-only, never a secret -------------------------------------------


def test_auditor_reads_the_audit_views_and_plain_columns(auditor_url: str, db_url: str) -> None:
    order_id = seed(db_url)
    with psycopg.connect(auditor_url) as conn:
        for view in AUDIT_VIEWS:
            conn.execute(f"SELECT * FROM {view}").fetchall()
        [(email,)] = conn.execute("SELECT email FROM orders WHERE id = %s", (order_id,)).fetchall()
        assert email == "ada@example.com"
        keys = conn.execute(
            "SELECT key_id, master_key_id FROM key_delivery_logs WHERE order_id = %s", (order_id,)
        ).fetchall()
        assert keys == [("k-1", "k1")]
        # payment_audit reads raw_body through the view's owner: the status, not the body.
        conn.execute("SELECT ipn_status FROM payment_audit").fetchall()
        [(why,)] = conn.execute(
            "SELECT why FROM needs_attention WHERE kind = 'webhook' AND order_id = %s",
            (order_id,),
        ).fetchall()
        assert why == "not processed yet"


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT wrapped_data_key FROM key_delivery_logs",
        "SELECT * FROM key_delivery_logs",
        "SELECT raw_body FROM webhook_events",
        "SELECT * FROM vault_canaries",
        "SELECT * FROM rate_limit_buckets",
        "SELECT token_hash FROM order_access_tokens",
    ],
)
def test_auditor_cannot_read_secrets(auditor_url: str, statement: str) -> None:
    assert refused(auditor_url, statement) == INSUFFICIENT_PRIVILEGE


def test_auditor_reads_every_column_but_the_secret_ones(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        hidden = conn.execute(
            f"""
            SELECT c.relname || '.' || a.attname
              FROM pg_class c
              JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             WHERE c.relkind IN ('r', 'v') AND {OURS}
               AND NOT has_column_privilege('bitloot_auditor', c.oid, a.attnum, 'SELECT')
            """
        ).fetchall()
    assert {name for (name,) in hidden} == AUDITOR_HIDDEN


def test_auditor_writes_nothing(auditor_url: str, db_url: str) -> None:
    tables = our_tables(db_url)
    assert "orders" in tables
    for table in tables:
        for statement in (
            f"INSERT INTO {table} DEFAULT VALUES",
            f"DELETE FROM {table}",
            f"TRUNCATE {table}",
        ):
            assert refused(auditor_url, statement) == INSUFFICIENT_PRIVILEGE, statement
    assert refused(auditor_url, "UPDATE orders SET email = email") == INSUFFICIENT_PRIVILEGE
    assert refused(auditor_url, "SELECT procrastinate_register_worker_v1()") == (
        INSUFFICIENT_PRIVILEGE
    )


# --- `bitloot migrate` when its login may not create the roles -----------------------------


@pytest.fixture
def bare_cluster() -> Iterator[str]:
    """A PostgreSQL of its own, where the group roles do not exist yet: the superuser's URL."""
    data_dir = Path(tempfile.mkdtemp(prefix="bitloot-roles-pg-"))
    try:
        yield ensure_embedded_server(data_dir, database="postgres")
    finally:
        stop_embedded_server(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


def test_migrate_prints_the_roles_sql_when_it_may_not_create_them(
    bare_cluster: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with psycopg.connect(bare_cluster, autocommit=True) as admin:
        admin.execute("CREATE ROLE t_owner LOGIN PASSWORD 'owner-password'")
        admin.execute("CREATE DATABASE owned OWNER t_owner")
    params = conninfo_to_dict(bare_cluster)
    owner_url = make_conninfo(bare_cluster, user="t_owner", dbname="owned")
    superuser_url = make_conninfo(bare_cluster, user=str(params["user"]), dbname="owned")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", owner_url)

    assert main(["migrate"]) == 0
    out = capsys.readouterr().out
    assert "applied  0009_roles" in out
    assert "do not exist, and this login may not create them" in out
    assert roles_sql() in out
    assert "CREATE ROLE bitloot_app NOLOGIN;" in roles_sql()

    # The administrator runs it once; the next `bitloot migrate` grants.
    with psycopg.connect(superuser_url, autocommit=True) as admin:
        admin.execute(roles_sql())
    assert main(["migrate"]) == 0
    out = capsys.readouterr().out
    assert "nothing to apply" in out and "granted  bitloot_app, bitloot_auditor" in out
    with psycopg.connect(owner_url) as conn:
        rights = conn.execute(
            "SELECT has_table_privilege('bitloot_app', 'orders', 'INSERT'),"
            " has_table_privilege('bitloot_app', 'orders', 'DELETE'),"
            " has_column_privilege('bitloot_auditor', 'orders', 'email', 'SELECT'),"
            " has_column_privilege('bitloot_auditor', 'webhook_events', 'raw_body', 'SELECT')"
        ).fetchone()
    assert rights == (True, False, True, False)


# --- serve and worker logged in as the application ----------------------------------------


async def test_serve_and_worker_fulfil_an_order_as_the_app_login(
    app_url: str, tmp_path: Path
) -> None:
    stack = Stack(db_url=app_url, data_dir=tmp_path)
    stack.seed_products()  # the application's login adds catalog rows too (bitloot products)
    try:
        await stack.start_sim()
        await stack.start_api()
        stack.start_worker()
        async with aiohttp.ClientSession() as http:
            order = await stack.create_order(http, [{"productId": TEXT_PRODUCT_ID, "qty": 1}])
            await stack.pay(http, order["id"])
            rows = await stack.wait_until([order["id"]], timeout=60)
            assert rows[order["id"]][:2] == ("fulfilled", "fulfilled"), stack.log_text("worker")
            await stack.wait_settled([order["id"]], timeout=60)
    finally:
        stack.stop_all()
    logs = stack.log_text("api") + stack.log_text("worker")
    assert "permission denied" not in logs
