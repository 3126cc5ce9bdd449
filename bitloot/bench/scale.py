"""`bitloot bench scale`: the customer and admin read paths on a million orders vs a thousand.

Two databases on one embedded PostgreSQL: `scale_shallow` with `--baseline-orders` (1,000)
and `scale_deep` with `--orders` (1,000,000) fulfilled orders, each with its order item,
NOWPayments payment and key delivery row, plus one stored IPN per 100 orders. They are
generated in SQL (`scale.sql`: INSERT ... SELECT generate_series, 100,000 rows a statement,
two loader connections at once, triggers off for the loader's sessions only, then VACUUM
ANALYZE and a checkpoint, as autovacuum would do soon after such a load). The key rows carry
a well-formed but random wrapped data key; the `--probes` orders (spread evenly over each
table) get a real one, sealed with the configured master key and stored in the configured
object store, so download-link really unwraps and signs.

One `bitloot serve` per database (rate limits off), measured in the same run and interleaved
request by request (shallow, deep, deep, shallow, ...), one keep-alive connection each,
sequential requests: `--warmup` then `--requests` calls of each of

- `GET /fulfillment/{id}/download-link` and `GET /fulfillment/{id}/status` with an order token,
  cycling over the probe orders;
- `GET /admin/payments` (first page, 50 rows) and the same with a cursor deep in the table
  (between 10% and 50% of the payments, counted from the oldest), with an admin token.

ratio = deep p50 / shallow p50 per call; the reported `ratio` is the largest. Target: < 1.5.
`plans` holds EXPLAIN (ANALYZE, BUFFERS) of every query those calls run, at the deep point,
with the parameters (custom plan) and as a prepared statement under `force_generic_plan`
(what a pooled connection runs once psycopg has prepared it); a Seq Scan on a big table in
either is a problem.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import psycopg
import structlog
from pydantic import SecretStr

from bitloot.auth.order_tokens import mint_order_token
from bitloot.auth.tokens import mint_user_token
from bitloot.bench.common import (
    Stopwatch,
    add_common_arguments,
    emit,
    format_table,
    latency_ms,
    machine_info,
    positive_int,
    progress,
)
from bitloot.bench.scale_data import (
    ScaleDb,
    create_database,
    deep_cursors,
    explain_all,
    load_orders,
    make_canary_for,
    make_probes,
    table_sizes,
)
from bitloot.bench.stack import BenchError, BenchStack, new_port
from bitloot.config import Settings
from bitloot.vault.crypto import DataKey, MasterKeyRing, open_blob

TARGET = 1.5
CALLS = ("download-link", "status", "admin first page", "admin deep cursor")
PAGE = 50


@dataclass
class Server:
    """One database's `bitloot serve` and the tokens the requests carry."""

    db: ScaleDb
    url: str
    order_tokens: list[str]
    admin_token: str

    def request(self, call: str, i: int) -> tuple[str, str]:
        """The URL and bearer token of the i-th request of `call`."""
        probe = i % len(self.db.probes)
        oid = self.db.probes[probe].order_id
        if call == "download-link":
            return f"{self.url}/fulfillment/{oid}/download-link", self.order_tokens[probe]
        if call == "status":
            return f"{self.url}/fulfillment/{oid}/status", self.order_tokens[probe]
        query = f"limit={PAGE}"
        if call == "admin deep cursor":
            query += f"&cursor={self.db.cursors[i % len(self.db.cursors)]}"
        return f"{self.url}/admin/payments?{query}", self.admin_token


def short_count(n: int) -> str:
    """1000 -> 1k, 1000000 -> 1M (exact multiples only; otherwise the number)."""
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


# --- set-up -------------------------------------------------------------------------------


def token_settings(stack: BenchStack) -> Settings:
    """The servers' JWT settings, for minting their tokens (nothing else is read)."""
    return Settings(
        _env_file=None,
        jwt_secret=SecretStr(stack.env["BITLOOT_JWT_SECRET"]),
        jwt_algorithm=None,
        jwt_issuer=None,
        jwt_audience=None,
    )


def prepare_db(
    stack: BenchStack, name: str, n: int, args: argparse.Namespace, ring: MasterKeyRing
) -> ScaleDb:
    """Create, load and probe one database."""
    url = create_database(stack, name, ring.active_id, make_canary_for(ring))
    clock = Stopwatch()
    load_orders(url, name, n, ring.active_id, desc=f"generating {short_count(n)} orders")
    seconds = round(clock.elapsed(), 1)
    probes = make_probes(stack, url, name, n, count=args.probes, ring=ring)
    cursors = deep_cursors(url, n, args.probes)
    if len(probes) != args.probes or len(cursors) != args.probes:
        raise BenchError(f"{name}: probes or cursors missing after the load")
    return ScaleDb(name, n, url, probes, cursors, load_seconds=seconds)


def start_server(stack: BenchStack, db: ScaleDb) -> Server:
    """`bitloot serve` on this database, with its tokens."""
    port = new_port()
    url = f"http://127.0.0.1:{port}"
    saved = stack.env
    stack.env = {**saved, "DATABASE_URL": db.url, "BITLOOT_PUBLIC_URL": url}
    try:
        stack.start_http(f"api-{db.name}", "serve", "--port", str(port), port=port,
                         ready_path="/readyz", module="bitloot")  # fmt: skip
    finally:
        stack.env = saved
    settings = token_settings(stack)
    tokens = asyncio.run(probe_tokens(db))
    admin = mint_user_token(settings, sub="bench-admin", admin=True, ttl=3600)
    return Server(db, url, tokens, admin)


async def probe_tokens(db: ScaleDb) -> list[str]:
    """An order access token per probe order, stored in that database (an hour each)."""
    async with await psycopg.AsyncConnection.connect(db.url, autocommit=True) as conn:
        return [await mint_order_token(conn, p.order_id) for p in db.probes]


async def verify_reveal(http: aiohttp.ClientSession, server: Server) -> None:
    """One download-link end to end: the signed URL serves the blob and the data key opens
    it to the key that was sealed (so the probes' rows are real, not just well-formed)."""
    url, token = server.request("download-link", 0)
    async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
        if resp.status != 200:
            raise BenchError(f"{server.db.name}: download-link answered {resp.status}")
        body = await resp.json()
    [key] = body["keys"]
    async with http.get(key["signedUrl"]) as resp:
        blob = await resp.read()
    probe = server.db.probes[0]
    data_key = DataKey(base64.b64decode(key["dataKey"]))
    if open_blob(blob, data_key, order_id=probe.order_id, key_id=probe.key_id) != probe.plaintext:
        raise BenchError(f"{server.db.name}: the revealed key is not the sealed one")


# --- measuring ----------------------------------------------------------------------------


async def measure(servers: list[Server], args: argparse.Namespace) -> dict[str, Any]:
    """Interleaved sequential requests; latencies (s) by call and database, and failures."""
    times: dict[str, dict[str, list[float]]] = {c: {s.db.name: [] for s in servers} for c in CALLS}
    failures: dict[str, int] = {}
    sample: str | None = None
    total = (args.warmup + args.requests) * len(CALLS) * len(servers)
    bar = progress(total, "requests", unit="req")
    sessions = {
        s.db.name: aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1), timeout=aiohttp.ClientTimeout(total=30)
        )
        for s in servers
    }
    try:
        for s in servers:
            await verify_reveal(sessions[s.db.name], s)
        for i in range(args.warmup + args.requests):
            for c, call in enumerate(CALLS):
                order = servers if (i + c) % 2 == 0 else servers[::-1]
                for s in order:
                    url, token = s.request(call, i)
                    started = time.perf_counter()
                    async with sessions[s.db.name].get(
                        url, headers={"Authorization": f"Bearer {token}"}
                    ) as resp:
                        body = await resp.read()
                        status = resp.status
                    elapsed = time.perf_counter() - started
                    bar.update(1)
                    if status != 200:
                        key = f"{s.db.name} {call}"
                        failures[key] = failures.get(key, 0) + 1
                        sample = sample or f"{key}: {status} {body[:200]!r}"
                    elif i >= args.warmup:
                        times[call][s.db.name].append(elapsed)
    finally:
        bar.close()
        for session in sessions.values():
            await session.close()
    return {"times": times, "failures": failures, "sample_failure": sample}


def figures(times: dict[str, dict[str, list[float]]], shallow: str, deep: str) -> dict[str, Any]:
    """Latency figures per call and database, and the deep / shallow ratios."""
    out: dict[str, Any] = {}
    for call in CALLS:
        lo, hi = latency_ms(times[call][shallow]), latency_ms(times[call][deep])
        out[call] = {
            "shallow": lo,
            "deep": hi,
            "ratio": round(hi["p50_ms"] / lo["p50_ms"], 3) if lo["p50_ms"] else None,
            "ratio_p99": round(hi["p99_ms"] / lo["p99_ms"], 3) if lo["p99_ms"] else None,
        }
    return out


# --- the run ------------------------------------------------------------------------------


def quiet_logs() -> None:
    """Product code called in this process (the object store) logs warnings only, to stderr:
    stdout is the report."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def run_scale(stack: BenchStack, args: argparse.Namespace) -> dict[str, Any]:
    """Every phase; the JSON result."""
    clock = Stopwatch()
    quiet_logs()
    stack.start_database()
    stack.env["BITLOOT_RATE_LIMIT_DOWNLOAD_PER_MINUTE"] = "0"
    stack.env["BITLOOT_RATE_LIMIT_DOWNLOAD_PER_ADDRESS_PER_MINUTE"] = "0"
    stack.env["BITLOOT_WORKER_METRICS_PORT"] = "0"
    ring = MasterKeyRing.parse(stack.env["BITLOOT_MASTER_KEYS"])
    shallow = prepare_db(stack, "scale_shallow", args.baseline_orders, args, ring)
    deep = prepare_db(stack, "scale_deep", args.orders, args, ring)
    servers = [start_server(stack, shallow), start_server(stack, deep)]
    measured = asyncio.run(measure(servers, args))
    for name in stack.procs:
        stack.check_alive(name)
    results = figures(measured["times"], shallow.name, deep.name)
    plans = explain_all(deep)
    seq_scans = {name: p["seq_scans_on_big_tables"] for name, p in plans.items()
                 if p["seq_scans_on_big_tables"]}  # fmt: skip
    ratios = [r["ratio"] for r in results.values() if r["ratio"] is not None]
    ratio = max(ratios) if ratios else 0.0
    deep_page = results["admin deep cursor"]["deep"]["p50_ms"]
    first_page = results["admin first page"]["deep"]["p50_ms"]
    machine = machine_info(stack.postgres_version())
    return {
        "benchmark": "scale",
        "orders": {"shallow": shallow.orders, "deep": deep.orders},
        "requests": args.requests,
        "warmup": args.warmup,
        "probes": args.probes,
        "page_size": PAGE,
        "results": results,
        "ratio": ratio,
        "target": TARGET,
        "met": bool(ratios) and ratio < TARGET and not seq_scans and not measured["failures"],
        "deep_cursor_vs_first_page": round(deep_page / first_page, 3) if first_page else None,
        "failures": measured["failures"],
        "sample_failure": measured["sample_failure"],
        "seq_scans": seq_scans,
        "plans": plans,
        "load_seconds": {"shallow": shallow.load_seconds, "deep": deep.load_seconds},
        "table_sizes": {"shallow": table_sizes(shallow.url), "deep": table_sizes(deep.url)},
        "total_seconds": round(clock.elapsed(), 1),
        "cpu_count": machine["cpu_count"],
        "versions": machine["versions"],
        "platform": machine["platform"],
        "date": machine["date"],
    }


def table(r: dict[str, Any]) -> str:
    lo, hi = short_count(r["orders"]["shallow"]), short_count(r["orders"]["deep"])
    headers = ["call", f"{lo} p50 ms", f"{lo} p99 ms", f"{hi} p50 ms", f"{hi} p99 ms",
               "ratio p50", "ratio p99"]  # fmt: skip
    rows = [
        [call, f["shallow"]["p50_ms"], f["shallow"]["p99_ms"], f["deep"]["p50_ms"],
         f["deep"]["p99_ms"], f["ratio"], f["ratio_p99"]]
        for call, f in r["results"].items()
    ]  # fmt: skip
    head = (
        f"bitloot bench scale: {r['orders']['deep']:,} fulfilled orders vs "
        f"{r['orders']['shallow']:,}, {r['requests']} sequential requests per call after "
        f"{r['warmup']} warm-up, {r['cpu_count']} CPUs, {r['date']}"
    )
    lines = [head, "", format_table(headers, rows), ""]
    for name, plan in r["plans"].items():
        scans = ", ".join(plan["seq_scans_on_big_tables"]) or "none"
        lines.append(f"plan {name}: {', '.join(plan['indexes']) or '-'}; seq scans: {scans}")
    lines += [
        "",
        f"generated {r['orders']['deep']:,} orders in {r['load_seconds']['deep']} s "
        f"({r['orders']['shallow']:,} in {r['load_seconds']['shallow']} s); "
        f"whole run {r['total_seconds']} s",
        f"ratio (largest, deep / shallow p50) {r['ratio']:.3f}, target < {r['target']}: "
        + ("met" if r["met"] else "NOT met"),
    ]
    return "\n".join(lines)


def cmd_scale(args: argparse.Namespace, _settings: Settings) -> int:
    """Run the scale benchmark; exit 1 when a request failed or a hot query seq-scans."""
    stack = BenchStack(args.data_dir, keep=args.keep)
    try:
        result = run_scale(stack, args)
    except (BenchError, RuntimeError) as exc:
        print(f"bitloot bench scale: {exc}", file=sys.stderr)
        stack.keep = True
        print(f"bitloot bench scale: logs kept in {stack.root / 'logs'}", file=sys.stderr)
        return 1
    finally:
        stack.close()
    problems = [f"{n} requests failed: {k}" for k, n in result["failures"].items()]
    problems += [f"{q}: Seq Scan on {', '.join(t)}" for q, t in result["seq_scans"].items()]
    result["problems"] = problems
    emit(table(result), result, as_json=args.json)
    for problem in problems:
        print(f"bitloot bench scale: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _at_least_1000(text: str) -> int:
    value = positive_int(text)
    if value < 1000:
        raise argparse.ArgumentTypeError(
            f"must be at least 1000 (deep cursors need pages), not {value}"
        )
    return value


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `bitloot bench scale`."""
    p = sub.add_parser("scale", help="read paths on 1,000,000 orders vs 1,000 (same run)")
    p.add_argument("--orders", type=_at_least_1000, default=1_000_000,
                   help="orders in the large database")  # fmt: skip
    p.add_argument("--baseline-orders", type=_at_least_1000, default=1000,
                   help="orders in the small database (the baseline)")  # fmt: skip
    p.add_argument("--requests", type=positive_int, default=200, help="measured calls of each")
    p.add_argument("--warmup", type=int, default=20, help="unmeasured calls of each first")
    p.add_argument("--probes", type=positive_int, default=20,
                   help="orders (and deep cursors) the calls cycle over")  # fmt: skip
    add_common_arguments(p)
    p.set_defaults(handler=cmd_scale)
