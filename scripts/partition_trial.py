"""Partitioning trial at the scale benchmark's size (issue 17, README "Capacity model").

`python scripts/partition_trial.py [ORDERS [SECONDS]]` (default 1,000,000 orders, one
every 20 s, as `bitloot bench scale` generates them: about 8 months): an append-only log
shaped like `order_events`, four events per order, kept once as one table and once
partitioned by month; then, on its own embedded PostgreSQL, prints JSON with:
- reads by order id as the admin timeline makes them (2,000 random orders, prepared):
  plain, partitioned, and partitioned with the order's created_at as a lower bound (which
  lets PostgreSQL prune the months before the order at run time), p50/p99 and the plan;
- the write path (20,000 single-row inserts, one per status change as the trigger does);
- retiring the oldest month: DETACH PARTITION vs DELETE.
An experiment, not a migration: nothing in BitLoot's schema is partitioned.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from bitloot.db.embedded import ensure_embedded_server, stop_embedded_server

T0 = "2024-01-01 00:00:00+00"
MONTHS = 10
COLUMNS = """id bigint GENERATED ALWAYS AS IDENTITY, order_id uuid NOT NULL,
    machine text NOT NULL, from_status text, to_status text NOT NULL, actor text NOT NULL,
    reason text, at timestamptz NOT NULL DEFAULT clock_timestamp()"""
EVENTS = """(VALUES ('order', NULL, 'created', 'api', interval '0'),
                    ('order', 'created', 'waiting', 'api', interval '1 second'),
                    ('order', 'waiting', 'paid', 'nowpayments', interval '60 seconds'),
                    ('fulfillment', 'pending', 'fulfilled', 'worker', interval '65 seconds'))
            AS e(machine, f, t, actor, d)"""
LOOKUPS = {
    "plain by order id": "SELECT * FROM oe_plain WHERE order_id = %(o)s ORDER BY id",
    "partitioned by order id": "SELECT * FROM oe_part WHERE order_id = %(o)s ORDER BY id",
    "partitioned, bounded by the order's created_at": (
        "SELECT * FROM oe_part WHERE order_id = %(o)s"
        " AND at >= (SELECT created_at FROM orders_x WHERE id = %(o)s) ORDER BY id"
    ),
}
INSERT = (
    "INSERT INTO {table} (order_id, machine, to_status, actor, at) VALUES"
    " (%s, 'order', 'paid', 'bench', timestamptz '" + T0 + "' + interval '7 month'"
    " + %s * interval '1 second')"
)


def ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def load(c: psycopg.Connection[Any], orders: int, spacing: int, out: dict[str, Any]) -> None:
    c.execute("CREATE TABLE orders_x (id uuid PRIMARY KEY, created_at timestamptz NOT NULL)")
    c.execute(f"CREATE TABLE oe_plain ({COLUMNS})")
    c.execute(f"CREATE TABLE oe_part ({COLUMNS}) PARTITION BY RANGE (at)")
    for m in range(MONTHS):
        lo = f"timestamptz '{T0}' + interval '{m} month'"
        hi = f"timestamptz '{T0}' + interval '{m + 1} month'"
        c.execute(f"CREATE TABLE oe_part_{m} PARTITION OF oe_part FOR VALUES FROM ({lo}) TO ({hi})")
    c.execute(
        "INSERT INTO orders_x SELECT md5('o' || g)::uuid,"
        f" timestamptz '{T0}' + g * interval '{spacing} seconds'"
        f" FROM generate_series(1, {orders}) g"
    )
    for table in ("oe_plain", "oe_part"):
        start = time.perf_counter()
        c.execute(
            f"INSERT INTO {table} (order_id, machine, from_status, to_status, actor, at)"
            f" SELECT o.id, e.machine, e.f, e.t, e.actor, o.created_at + e.d"
            f" FROM orders_x o, {EVENTS}"
        )
        out[f"load_s_{table}"] = round(ms_since(start) / 1000, 1)
    c.execute("CREATE INDEX oe_plain_order_idx ON oe_plain (order_id, id)")
    c.execute("CREATE INDEX oe_part_order_idx ON oe_part (order_id, id)")
    c.execute("VACUUM ANALYZE orders_x, oe_plain, oe_part")
    out["rows_per_table"] = c.execute("SELECT count(*) FROM oe_plain").fetchone()[0]  # type: ignore[index]
    out["partitions_used"] = c.execute("SELECT count(DISTINCT tableoid) FROM oe_part").fetchone()[0]  # type: ignore[index]


def lookups(c: psycopg.Connection[Any], out: dict[str, Any]) -> None:
    ids = [r[0] for r in c.execute("SELECT id FROM orders_x ORDER BY random() LIMIT 2000")]
    out["lookups"] = {}
    for name, query in LOOKUPS.items():
        for o in ids[:200]:  # warm-up, and psycopg prepares the statement
            c.execute(query, {"o": o}, prepare=True).fetchall()
        latencies = []
        for o in ids:
            start = time.perf_counter()
            rows = c.execute(query, {"o": o}, prepare=True).fetchall()
            latencies.append(ms_since(start))
            assert len(rows) == 4, (name, len(rows))
        explain = c.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + query, {"o": ids[7]})
        out["lookups"][name] = {
            "p50_ms": round(statistics.median(latencies), 3),
            "p99_ms": round(sorted(latencies)[int(len(latencies) * 0.99)], 3),
            "plan": "\n".join(r[0] for r in explain),
        }


def writes_and_retirement(c: psycopg.Connection[Any], out: dict[str, Any]) -> None:
    out["insert_ms_per_row"] = {}
    for table in ("oe_plain", "oe_part"):
        start = time.perf_counter()
        with c.transaction():
            for i in range(20_000):
                c.execute(INSERT.format(table=table), (uuid.uuid4(), i), prepare=True)
        out["insert_ms_per_row"][table] = round(ms_since(start) / 20_000, 4)
    start = time.perf_counter()
    c.execute("ALTER TABLE oe_part DETACH PARTITION oe_part_0")
    out["retire_month_partitioned_ms"] = round(ms_since(start), 1)
    start = time.perf_counter()
    deleted = c.execute(
        f"DELETE FROM oe_plain WHERE at < timestamptz '{T0}' + interval '1 month'"
    ).rowcount
    out["retire_month_plain_ms"] = round(ms_since(start), 1)
    out["retired_rows"] = deleted
    out["sizes_mb"] = {
        t: round(c.execute(f"SELECT pg_total_relation_size('{t}')").fetchone()[0] / 2**20, 1)  # type: ignore[index]
        for t in ("oe_plain", "oe_part_1")
    }


def main() -> None:
    orders = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    spacing = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    if orders * spacing > (MONTHS - 1) * 28 * 86_400:
        raise SystemExit(f"{orders} orders every {spacing} s do not fit in {MONTHS - 1} months")
    data = Path(tempfile.mkdtemp(prefix="bitloot-partition-trial-"))
    url = ensure_embedded_server(data)
    out: dict[str, Any] = {"orders": orders}
    try:
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("SET max_parallel_workers_per_gather = 0")
            load(c, orders, spacing, out)
            lookups(c, out)
            writes_and_retirement(c, out)
    finally:
        stop_embedded_server(data)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
