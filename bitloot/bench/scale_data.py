"""The data side of `bitloot bench scale`: a database per size, bulk-loaded in SQL, the probe
orders that get real keys, the keyset cursors, and the EXPLAIN of every hot query.

The loader (`scale.sql`) is a benchmark tool, not product code: it writes fulfilled orders in
their final state with triggers off for its own sessions (see the file's header), in chunks of
`CHUNK` rows per statement, on two connections at once (one per core).
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bitloot.admin.models import PaymentListQuery
from bitloot.admin.repository import payments_page_query
from bitloot.bench.common import progress
from bitloot.bench.stack import MAX_COST, PRICE, PRODUCT_ID, BenchStack, Q
from bitloot.db.migrate import apply_migrations
from bitloot.db.queries import QuerySet
from bitloot.storage.factory import open_storage
from bitloot.vault.canary import make_canary
from bitloot.vault.crypto import LOCAL_URL_PURPOSE, MasterKeyRing, seal_key
from bitloot.web.cursor import Position, encode_cursor

S = QuerySet("bitloot.bench", "scale.sql")
ACCESS = QuerySet("bitloot.fulfillment", "access_queries.sql")

CHUNK = 100_000
LOADERS = 2
T0 = datetime(2024, 1, 1, tzinfo=UTC)
WEBHOOK_EVERY = 100
BULK_TABLES = ("orders", "order_items", "payments", "key_delivery_logs")
BIG_TABLES = (*BULK_TABLES, "webhook_events", "key_access_events")
# Deep cursors sit between these fractions of the table, counted from the oldest payment;
# the first page is the newest.
DEEP_FROM, DEEP_TO = 0.10, 0.50


@dataclass(frozen=True)
class Probe:
    """An order that download-link and status are called on (its key is real)."""

    order_id: uuid.UUID
    key_id: str
    plaintext: bytes


@dataclass
class ScaleDb:
    """One database of the comparison and what the requests need from it."""

    name: str
    orders: int
    url: str
    probes: list[Probe]
    cursors: list[str]
    load_seconds: float = 0.0


def database_url(stack: BenchStack, name: str) -> str:
    """The URL of database `name` on the benchmark's server."""
    params = {k: v for k, v in conninfo_to_dict(stack.db_url).items() if v is not None}
    params["dbname"] = name
    return make_conninfo("", **params)


def create_database(stack: BenchStack, name: str, master_key_id: str, canary: bytes) -> str:
    """A new migrated database with the benchmark product and the master key's canary."""
    with stack.connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = database_url(stack, name)
    apply_migrations(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(Q["seed_product"], {"product_id": PRODUCT_ID, "price": PRICE,
                                         "max_cost": MAX_COST})  # fmt: skip
        conn.execute(S["insert_canary"], {"master_key_id": master_key_id, "wrapped": canary})
    return url


def make_canary_for(ring: MasterKeyRing) -> bytes:
    """The active master key's canary (what a server writes at its first start)."""
    return make_canary(ring, ring.active_id)


# --- the bulk load ------------------------------------------------------------------------


def load_orders(url: str, ns: str, n: int, master_key_id: str, desc: str) -> None:
    """N fulfilled orders with item, payment and key (and an IPN every 100th), then VACUUM."""
    tasks: queue.SimpleQueue[tuple[str, int, int]] = queue.SimpleQueue()
    for table in (*BULK_TABLES, "webhook_events"):
        for first in range(1, n + 1, CHUNK):
            tasks.put((table, first, min(n, first + CHUNK - 1)))
    base = {"ns": ns, "price": PRICE, "max_cost": MAX_COST, "product_id": PRODUCT_ID,
            "t0": T0, "master_key_id": master_key_id, "every": WEBHOOK_EVERY}  # fmt: skip
    bar = progress(n * len(BULK_TABLES), desc, unit="row")
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(S["bulk_session"])
                conn.execute(S["fast_commits"])
                while not errors:
                    try:
                        table, first, last = tasks.get_nowait()
                    except queue.Empty:
                        return
                    conn.execute(S[f"insert_{table}"], {**base, "first": first, "last": last})
                    if table != "webhook_events":
                        bar.update(last - first + 1)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, name=f"loader-{i}") for i in range(LOADERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bar.close()
    if errors:
        raise errors[0]
    # What autovacuum would do soon anyway, done now so it does not run during the timing.
    with psycopg.connect(url, autocommit=True) as conn:
        for table in (*BULK_TABLES, "webhook_events"):
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))
        conn.execute("CHECKPOINT")


def table_sizes(url: str) -> dict[str, dict[str, int | None]]:
    """Rows (estimated) and total bytes of the big tables."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(S["table_sizes"], {"tables": list(BIG_TABLES)}).fetchall()
    return {
        str(name): {"rows": int(n) if n >= 0 else None, "bytes": int(size)}
        for name, n, size in rows
    }


# --- probes and cursors -------------------------------------------------------------------


def positions(n: int, count: int, low: float = 0.0, high: float = 1.0) -> list[int]:
    """`count` order numbers spread evenly over [low, high) of 1..n."""
    span = (high - low) * n
    return [max(1, min(n, round(low * n + (i + 0.5) * span / count))) for i in range(count)]


def make_probes(
    stack: BenchStack, url: str, ns: str, n: int, *, count: int, ring: MasterKeyRing
) -> list[Probe]:
    """Give `count` orders spread over the table a real sealed key, stored as the server
    would store it, so download-link can unwrap it."""
    with psycopg.connect(url, autocommit=True) as conn:
        found = [conn.execute(S["probe_key"], {"ns": ns, "g": g}).fetchone() for g in
                 positions(n, count)]  # fmt: skip
    rows = [r for r in found if r is not None]
    probes: list[Probe] = []

    async def store() -> None:
        storage = await open_storage(
            (stack.root / "objects").as_uri(),
            public_url=stack.env.get("BITLOOT_PUBLIC_URL", "http://127.0.0.1"),
            signing_keys=ring.derived_keys(LOCAL_URL_PURPOSE),
        )
        try:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                # Triggers off, as for the bulk load: the delivery log's guard lets a data
                # key change only by a re-wrap under another master key, and this puts a
                # real key in place of the loader's fake under the same one.
                await conn.execute(S["bulk_session"])
                for order_id, key_id, object_key in rows:
                    plaintext = b"SCALE-" + os.urandom(12).hex().upper().encode()
                    sealed = seal_key(plaintext, order_id=order_id, key_id=key_id, ring=ring)
                    await storage.put(
                        object_key, sealed.blob, content_type="application/octet-stream",
                        metadata={"order-id": str(order_id), "key-type": "text/plain"},
                    )  # fmt: skip
                    await conn.execute(
                        S["set_real_key"],
                        {"order_id": order_id, "key_id": key_id, "wrapped": sealed.wrapped_data_key,
                         "master_key_id": sealed.master_key_id},
                    )  # fmt: skip
                    probes.append(Probe(order_id, key_id, plaintext))
        finally:
            await storage.close()

    asyncio.run(store())
    return probes


def deep_cursors(url: str, n: int, count: int) -> list[str]:
    """Keyset cursors of the admin payments list, deep in the table (see DEEP_FROM)."""
    cursors = []
    with psycopg.connect(url, autocommit=True) as conn:
        for g in positions(n, count, DEEP_FROM, DEEP_TO):
            row = conn.execute(S["payment_position"], {"g": g}).fetchone()
            if row is not None:
                cursors.append(encode_cursor(Position(row[0], str(row[1]))))
    return cursors


# --- EXPLAIN ------------------------------------------------------------------------------

_SCAN = re.compile(
    r"(?P<kind>Seq Scan|Index Only Scan|Index Scan)(?: Backward)?"
    r"(?: using (?P<index>\S+))? on (?P<table>\w+)"
)
_BITMAP = re.compile(r"Bitmap Index Scan on (?P<index>\w+)")
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def hot_queries(db: ScaleDb) -> dict[str, tuple[LiteralString, dict[str, Any]]]:
    """Every query the measured calls run, with the parameters of a deep probe/cursor."""
    probe = db.probes[len(db.probes) // 2]
    owner = {"order_id": probe.order_id, "is_admin": False, "user_id": None,
             "token_order_id": probe.order_id}  # fmt: skip
    first_sql, first_params = payments_page_query(PaymentListQuery())
    deep_sql, deep_params = payments_page_query(
        PaymentListQuery(cursor=db.cursors[len(db.cursors) // 2])
    )
    access = {"order_id": probe.order_id, "key_ids": [probe.key_id], "actor_kind": "order_token",
              "actor_id": str(probe.order_id), "client_ip": "127.0.0.1",
              "user_agent": "bitloot-bench"}  # fmt: skip
    return {
        "status: fulfillment_status": (ACCESS["fulfillment_status"], owner),
        "download-link: order_for_download": (ACCESS["order_for_download"], owner),
        "download-link: keys_for_download": (
            ACCESS["keys_for_download"],
            {"order_id": probe.order_id},
        ),
        "download-link: record_key_access": (ACCESS["record_key_access"], access),
        "admin payments: first page": (first_sql, first_params),
        "admin payments: deep cursor": (deep_sql, deep_params),
    }


def explain_all(db: ScaleDb) -> dict[str, dict[str, Any]]:
    """EXPLAIN (ANALYZE, BUFFERS) of each hot query, with its parameters (the custom plan)
    and as a prepared statement under `force_generic_plan` (what a pooled connection runs
    once psycopg has prepared it); each in a transaction that is rolled back."""
    plans: dict[str, dict[str, Any]] = {}
    with psycopg.connect(db.url, autocommit=True) as conn:
        for name, (query, params) in hot_queries(db).items():
            custom = _explain(conn, query, params)
            generic = _explain_generic(conn, query, params)
            scans = _scans(custom) + _scans(generic)
            plans[name] = {
                "plan": custom,
                "generic_plan": generic,
                "indexes": sorted({s["index"] for s in scans if s["index"]}),
                "seq_scans_on_big_tables": sorted(
                    {
                        s["table"]
                        for s in scans
                        if s["kind"] == "Seq Scan" and s["table"] in BIG_TABLES
                    }
                ),
            }
    return plans


def _explain(conn: psycopg.Connection[Any], query: LiteralString, params: dict[str, Any]) -> str:
    with conn.transaction(force_rollback=True):
        rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + query, params).fetchall()
    return "\n".join(str(r[0]) for r in rows)


def _explain_generic(
    conn: psycopg.Connection[Any], query: LiteralString, params: dict[str, Any]
) -> str:
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    text = _PLACEHOLDER.sub(number, query).replace("%%", "%")
    values = [params[n] for n in names]
    types = sql.SQL(", ").join(sql.SQL(_pg_type(v)) for v in values)
    with conn.transaction(force_rollback=True):
        conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        conn.execute(sql.SQL("PREPARE bench_hot ({}) AS {}").format(types, sql.SQL(text)))
        # EXPLAIN EXECUTE takes no bound parameters: the values go in as literals.
        marks = sql.SQL(", ").join(sql.Placeholder() * len(values))
        rows = (
            psycopg.ClientCursor(conn)
            .execute(
                sql.SQL("EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_hot ({})").format(marks), values
            )
            .fetchall()
        )
    conn.execute("DEALLOCATE bench_hot")
    return "\n".join(str(r[0]) for r in rows)


def _pg_type(value: Any) -> LiteralString:
    # The parameter types psycopg would send; PREPARE cannot infer all of them from context.
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint"
    if isinstance(value, uuid.UUID):
        return "uuid"
    if isinstance(value, datetime):
        return "timestamptz"
    if isinstance(value, list):
        return "text[]"
    return "text"


def _scans(plan: str) -> list[dict[str, str]]:
    found = [
        {"kind": m.group("kind"), "index": m.group("index") or "", "table": m.group("table")}
        for m in _SCAN.finditer(plan)
    ]
    found += [{"kind": "Bitmap Index Scan", "index": m.group("index"), "table": ""}
              for m in _BITMAP.finditer(plan)]  # fmt: skip
    return found
