"""`bitloot bench pipeline`: paid orders through the workers to keys stored and recorded.

Set-up: the simulators (`bitloot sim`) with Kinguin at zero latency (keys with the order,
via the control API: `POST /kinguin/sim/delivery {"delay": 0, "gradual": false}`, a
product with deep stock and a large balance), one `bitloot serve` (it receives Kinguin's
`order.status` webhooks, as in production) and W `bitloot worker --concurrency C`.

Payment: orders are inserted in SQL (one batch) and then paid in one transaction that
enqueues each `fulfill_order` through the product's own `defer_fulfillment` (the call the
IPN handler makes) and moves every order to `paid`, with `paid_at` taken at the end of the
transaction, just before its commit. This keeps the HTTP side (`bench ipn` measures it)
out of the figure, so orders/s is the workers' throughput alone.

Figures: orders/s = N / (last `fulfilled_at` - first `paid_at`); time-to-key per order =
`fulfilled_at - paid_at` (payment committed -> key rows committed), p50/p99/max. Then
orders are paid one at a time at half the burst's orders/s for `--half-seconds` (target:
time-to-key p99 < 250 ms: a shop at half its peak still delivers at once), and at a light
pace (`--light-rate`, 10/s; target p50 < 100 ms).
Email jobs run on the same workers (as they would) but are not waited for.

Baseline, in the same run: procrastinate no-op jobs/s with W processes of concurrency C
(`bitloot.bench.noop`, same worker options and pool size). ratio = orders/s / no-op jobs/s.

`--profile DIR` attaches py-spy (`--gil`: Python CPU time only) to every worker during the
burst and writes collapsed stacks (`worker-N.txt`, for speedscope or flamegraph.pl) and
`summary.json`, the hottest frames (py-spy must be installed). `--pg-stats` restarts the
database with pg_stat_statements and reports its top statements over the burst.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psycopg

from bitloot.bench.common import (
    CpuMeter,
    Profiler,
    RssSampler,
    add_common_arguments,
    emit,
    format_table,
    interrupt_on_sigterm,
    latency_ms,
    machine_info,
    positive_int,
    progress,
)
from bitloot.bench.ipn import create_waiting_orders
from bitloot.bench.noop import NOOP_QUEUE, defer_noops
from bitloot.bench.stack import PRODUCT_ID, SIM_COST, BenchError, BenchStack, Q, new_port
from bitloot.config import Settings

TARGET_RATIO = 0.33
TARGET_LIGHT_P50_MS = 100.0
TARGET_HALF_PEAK_P99_MS = 250.0
HALF_PEAK_MAX_RATE = 500.0  # orders/s: bounds the stock the simulator is given
WORK_QUEUES = ["fulfillment", "email", "maintenance"]
POLL = 0.02  # the no-op baseline's end is seen by polling: keep it fine
ORDER_POLL = 0.1  # orders carry their own timestamps: polling only has to notice the end


# --- simulators ---------------------------------------------------------------------------


def sim_post(sim_url: str, path: str, body: dict[str, Any]) -> Any:
    """POST JSON to the simulators' control API."""
    req = urllib.request.Request(  # noqa: S310 - loopback only
        f"{sim_url}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback only
        return json.loads(resp.read() or b"null")


def configure_sim(sim_url: str, stock: int, *, webhooks: bool) -> None:
    """Keys with the order, deep stock of the benchmark product, a balance that lasts."""
    sim_post(sim_url, "/kinguin/sim/delivery", {"delay": 0, "gradual": False})
    sim_post(sim_url, "/kinguin/sim/balance", {"balance": "100000000"})
    sim_post(
        sim_url,
        "/kinguin/sim/products",
        {
            "product_id": PRODUCT_ID,
            "name": "Benchmark Game (Steam key)",
            "offers": [{"price": str(SIM_COST), "qty": stock}],
        },
    )
    if not webhooks:
        sim_post(sim_url, "/kinguin/sim/config", {"webhook_url": None})


# --- paying and waiting -------------------------------------------------------------------


async def pay(db_url: str, order_ids: list[uuid.UUID]) -> None:
    """Enqueue each order's fulfillment and mark it paid, in one transaction."""
    from bitloot.fulfillment.service import defer_fulfillment

    async with (
        await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn,
        conn.transaction(),
    ):
        await conn.execute("SELECT set_config('bitloot.actor', 'bench', true)")
        for oid in order_ids:
            await defer_fulfillment(conn, oid)
        await conn.execute(Q["payments_covering"], {"ids": order_ids})
        await conn.execute(Q["orders_paid"], {"ids": order_ids})


async def pay_paced(db_url: str, order_ids: list[uuid.UUID], rate: float) -> None:
    """Pay the orders one at a time, `rate` per second (one transaction each)."""
    from bitloot.fulfillment.service import defer_fulfillment

    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        start = time.perf_counter()
        for i, oid in enumerate(order_ids):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            async with conn.transaction():
                await conn.execute("SELECT set_config('bitloot.actor', 'bench', true)")
                await defer_fulfillment(conn, oid)
                await conn.execute(Q["payments_covering"], {"ids": [oid]})
                await conn.execute(Q["orders_paid"], {"ids": [oid]})


def wait_done(
    stack: BenchStack, order_ids: list[uuid.UUID], *, timeout: float, desc: str,
    watch: list[str],
) -> tuple[int, int]:  # fmt: skip
    """Poll until every order is fulfilled or failed; (fulfilled, failed)."""
    deadline = time.monotonic() + timeout
    bar = progress(len(order_ids), desc, unit="order")
    done = (0, 0)
    try:
        with stack.connect() as conn:
            while True:
                row = conn.execute(Q["count_done"], {"ids": order_ids}).fetchone()
                assert row is not None
                new = (int(row[0]), int(row[1]))
                bar.update(sum(new) - sum(done))
                done = new
                if sum(done) >= len(order_ids):
                    return done
                for name in watch:
                    stack.check_alive(name)
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"{desc}: only {done[0]} fulfilled and {done[1]} failed of "
                        f"{len(order_ids)} after {timeout:.0f}s; see {stack.root / 'logs'}"
                    )
                time.sleep(ORDER_POLL)
    finally:
        bar.close()


def wait_queue_empty(stack: BenchStack, queues: list[str], timeout: float) -> float:
    """Poll until no job of `queues` is todo or doing; seconds waited."""
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    with stack.connect() as conn:
        while True:
            row = conn.execute(Q["jobs_pending"], {"queues": queues}).fetchone()
            if row is not None and int(row[0]) == 0:
                return time.perf_counter() - started
            if time.monotonic() > deadline:
                raise BenchError(f"jobs of {queues} still pending after {timeout:.0f}s")
            time.sleep(POLL)


def fulfillment_figures(stack: BenchStack, order_ids: list[uuid.UUID]) -> dict[str, Any]:
    """Time-to-key percentiles, the batch's span, failures and webhook-enqueued jobs."""
    with stack.connect() as conn:
        rows = conn.execute(Q["fulfillment_times"], {"ids": order_ids}).fetchall()
        failures = conn.execute(Q["failures"], {"ids": order_ids}).fetchall()
        extra = conn.execute(Q["webhook_enqueued"], {"ids": order_ids}).fetchone()
        emails = conn.execute(Q["emails_sent"], {"ids": order_ids}).fetchone()
    ttk = [float(r[0]) for r in rows]
    span = float(rows[0][1]) if rows else 0.0
    return {
        "orders": len(order_ids),
        "fulfilled": len(ttk),
        "failed": sum(int(n) for _, n in failures),
        "failure_reasons": {str(reason): int(n) for reason, n in failures},
        "seconds": round(span, 3),
        "orders_per_s": round(len(ttk) / span, 1) if span > 0 else 0.0,
        "time_to_key": latency_ms(ttk),
        "jobs_enqueued_by_kinguin_webhooks": int(extra[0]) if extra else 0,
        "emails_sent_by_then": int(emails[0]) if emails else 0,
    }


# --- the no-op baseline -------------------------------------------------------------------


def noop_baseline(stack: BenchStack, args: argparse.Namespace) -> dict[str, Any]:
    """No-op jobs/s with W procrastinate workers of concurrency C."""
    names = [f"noop-{i}" for i in range(args.workers)]
    for name in names:
        stack.spawn(name, "--concurrency", str(args.concurrency), module="bitloot.bench.noop")
    try:
        # Warm-up doubles as the readiness check: the jobs only go once workers run.
        _defer_noops(stack, max(50, args.workers * args.concurrency * 4))
        wait_queue_empty(stack, [NOOP_QUEUE], timeout=60)
        bar = progress(args.noop_jobs, "no-op jobs", unit="job")
        _defer_noops(stack, args.noop_jobs)
        cpu = CpuMeter()
        for name in names:
            cpu.watch("workers", stack.procs[name].pid)
        postmaster = stack.postmaster_pid()
        if postmaster is not None:
            cpu.watch("postgres", postmaster, tree=True)
        cpu.start()
        started = time.perf_counter()
        left = args.noop_jobs
        with stack.connect() as conn:
            while left:
                row = conn.execute(Q["jobs_pending"], {"queues": [NOOP_QUEUE]}).fetchone()
                now_left = int(row[0]) if row else 0
                bar.update(left - now_left)
                left = now_left
                if time.perf_counter() - started > args.timeout:
                    raise BenchError(f"no-op jobs not done after {args.timeout:.0f}s")
                for name in names:
                    stack.check_alive(name)
                if left:
                    time.sleep(POLL)
        seconds = time.perf_counter() - started
        cpu_seconds = cpu.stop()
        bar.close()
    finally:
        stack.stop(*names)
    return {
        "jobs": args.noop_jobs,
        "seconds": round(seconds, 3),
        "jobs_per_s": round(args.noop_jobs / seconds, 1),
        "cpu_ms_per_job": {k: round(1000 * v / args.noop_jobs, 3) for k, v in cpu_seconds.items()},
    }


def _defer_noops(stack: BenchStack, count: int) -> None:
    async def go() -> None:
        async with (
            await psycopg.AsyncConnection.connect(stack.db_url, autocommit=True) as conn,
            conn.transaction(),
        ):
            await defer_noops(conn, count)

    asyncio.run(go())


# --- the run ------------------------------------------------------------------------------


def start_services(stack: BenchStack, args: argparse.Namespace, light_n: int) -> None:
    """PostgreSQL, the simulators (zero latency) and one API server."""
    api_port, sim_port = new_port(), new_port()
    api_url, sim_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{sim_port}"
    stack.start_database(api_url=api_url, sim_url=sim_url)
    if args.pg_stats:
        stack.enable_statement_stats()
    if args.extra_sql:
        stack.run_sql_file(args.extra_sql)
    stack.start_http(
        "sim", "sim", "--port", str(sim_port), port=sim_port,
        ready_path="/nowpayments/v1/status", module="bitloot",
    )  # fmt: skip
    half_n = round(HALF_PEAK_MAX_RATE * args.half_seconds)
    stock = args.orders + light_n + half_n + args.warmup + 1000
    configure_sim(sim_url, stock=stock, webhooks=args.kinguin_webhooks)
    stack.start_http(
        "api", "serve", "--port", str(api_port), port=api_port, ready_path="/readyz",
        module="bitloot",
    )  # fmt: skip


def burst_phase(
    stack: BenchStack, args: argparse.Namespace, workers: list[str], watch: list[str]
) -> tuple[dict[str, Any], Profiler | None]:
    """N orders paid in one transaction; figures once the last is fulfilled."""
    profiler = _profiler(args.profile)
    if profiler is not None:
        for name in workers:
            profiler.attach(name, stack.procs[name].pid)
    cpu = _cpu_meter(stack, workers)
    burst_ids = create_waiting_orders(stack, args.orders)
    if args.pg_stats:
        stack.reset_statement_stats()
        lsn = stack.wal_position()
    cpu.start()
    asyncio.run(pay(stack.db_url, burst_ids))
    wait_done(stack, burst_ids, timeout=args.timeout, desc="burst", watch=watch)
    cpu_seconds = cpu.stop()
    if profiler is not None:
        profiler.detach()
    burst = fulfillment_figures(stack, burst_ids)
    burst["cpu_seconds"] = cpu_seconds
    burst["cpu_ms_per_order"] = {
        k: round(1000 * v / max(1, burst["fulfilled"]), 2) for k, v in cpu_seconds.items()
    }
    if args.pg_stats:
        burst["pg_top_statements"] = stack.top_statements()
    burst["email_drain_seconds"] = round(wait_queue_empty(stack, WORK_QUEUES, 120), 3)
    if args.pg_stats:
        # Once the emails are sent too: everything an order costs PostgreSQL after payment.
        burst["pg_per_order"] = stack.pg_usage_since(lsn, max(1, burst["fulfilled"]))
    return burst, profiler


def paced_phase(
    stack: BenchStack, args: argparse.Namespace, rate: float, n: int, *, watch: list[str], desc: str
) -> dict[str, Any]:
    """`n` orders paid one at a time at `rate` per second; time-to-key there."""
    if not n:
        return {"orders": 0}
    ids = create_waiting_orders(stack, n)
    asyncio.run(pay_paced(stack.db_url, ids, rate))
    wait_done(stack, ids, timeout=args.timeout, desc=desc, watch=watch)
    figures = fulfillment_figures(stack, ids)
    figures["rate"] = rate
    wait_queue_empty(stack, WORK_QUEUES, 120)
    return figures


def half_peak_phase(
    stack: BenchStack, args: argparse.Namespace, peak: float, watch: list[str]
) -> dict[str, Any]:
    """Orders paid one at a time at half the burst's orders/s."""
    rate = round(min(peak / 2, HALF_PEAK_MAX_RATE), 1)
    if rate <= 0:
        return {"orders": 0}
    n = round(rate * args.half_seconds)
    return paced_phase(stack, args, rate, n, watch=watch, desc="half peak")


def light_phase(
    stack: BenchStack, args: argparse.Namespace, light_n: int, watch: list[str]
) -> dict[str, Any]:
    """Orders paid one at a time at `--light-rate`; time-to-key there."""
    return paced_phase(stack, args, args.light_rate, light_n, watch=watch, desc="light load")


def run_pipeline(stack: BenchStack, args: argparse.Namespace) -> dict[str, Any]:
    """Every phase; the JSON result."""
    light_n = round(args.light_rate * args.light_seconds)
    start_services(stack, args, light_n)
    baseline = noop_baseline(stack, args)

    workers = [f"worker-{i}" for i in range(args.workers)]
    for name in workers:
        stack.spawn(name, "worker", "--concurrency", str(args.concurrency))
    watch = ["api", "sim", *workers]
    # Warm-up (unmeasured): also proves the workers run; then let the emails drain.
    if args.warmup:
        warm = create_waiting_orders(stack, args.warmup)
        asyncio.run(pay(stack.db_url, warm))
        wait_done(stack, warm, timeout=120, desc="warm-up", watch=watch)
        wait_queue_empty(stack, WORK_QUEUES, timeout=120)

    rss = RssSampler()
    rss.watch("server", stack.procs["api"].pid)
    for name in workers:
        rss.watch("worker", stack.procs[name].pid)
    rss.start()
    burst, profiler = burst_phase(stack, args, workers, watch)
    half = half_peak_phase(stack, args, burst["orders_per_s"], watch)
    light = light_phase(stack, args, light_n, watch)
    peaks = rss.stop()

    ratio = (
        round(burst["orders_per_s"] / baseline["jobs_per_s"], 3) if baseline["jobs_per_s"] else 0.0
    )
    light_p50 = light.get("time_to_key", {}).get("p50_ms")
    light_ok = light_p50 is None or light_p50 < TARGET_LIGHT_P50_MS
    half_p99 = half.get("time_to_key", {}).get("p99_ms")
    half_ok = half_p99 is None or half_p99 < TARGET_HALF_PEAK_P99_MS
    machine = machine_info(stack.postgres_version())
    result: dict[str, Any] = {
        "benchmark": "pipeline",
        "orders": args.orders,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "kinguin_webhooks": args.kinguin_webhooks,
        "extra_sql": str(args.extra_sql) if args.extra_sql else None,
        "burst": burst,
        "half_peak": half,
        "light": light,
        "baseline": baseline,
        "orders_per_s": burst["orders_per_s"],
        "noop_jobs_per_s": baseline["jobs_per_s"],
        "ratio": ratio,
        "target": TARGET_RATIO,
        "light_p50_ms": light_p50,
        "light_target_p50_ms": TARGET_LIGHT_P50_MS,
        "half_peak_p99_ms": half_p99,
        "half_peak_target_p99_ms": TARGET_HALF_PEAK_P99_MS,
        "met": bool(ratio >= TARGET_RATIO and light_ok and half_ok),
        "peak_rss_mib": peaks,
        "cpu_count": machine["cpu_count"],
        "versions": machine["versions"],
        "load_average_1m": machine["load_average_1m"],
        "platform": machine["platform"],
        "date": machine["date"],
    }
    if profiler is not None:
        result["profile"] = {"dir": str(args.profile), **profiler.summary()}
    return result


def _profiler(directory: Path | None) -> Profiler | None:
    if directory is None:
        return None
    try:
        return Profiler(directory)
    except RuntimeError as exc:
        raise BenchError(str(exc)) from None


def _cpu_meter(stack: BenchStack, workers: list[str]) -> CpuMeter:
    cpu = CpuMeter()
    for name in workers:
        cpu.watch("workers", stack.procs[name].pid)
    cpu.watch("server", stack.procs["api"].pid)
    cpu.watch("simulators", stack.procs["sim"].pid)
    postmaster = stack.postmaster_pid()
    if postmaster is not None:
        cpu.watch("postgres", postmaster, tree=True)
    return cpu


def table(r: dict[str, Any]) -> str:
    b, light, base = r["burst"], r["light"], r["baseline"]
    ttk, lttk = b["time_to_key"], light.get("time_to_key", {})
    half = r.get("half_peak", {})
    httk = half.get("time_to_key", {})
    rows: list[list[Any]] = [
        ["burst: orders/s", b["orders_per_s"],
         f"{b['fulfilled']}/{b['orders']} in {b['seconds']} s"],
        ["burst: time-to-key p50 ms", ttk["p50_ms"], ""],
        ["burst: time-to-key p99 ms", ttk["p99_ms"], f"max {ttk['max_ms']}"],
        ["baseline: no-op jobs/s", base["jobs_per_s"],
         f"{base['jobs']} jobs in {base['seconds']} s"],
        ["ratio orders/s / no-op jobs/s", r["ratio"], f"target >= {r['target']}"],
        [f"half peak ({half.get('rate', 0)}/s): time-to-key p50 ms", httk.get("p50_ms"), ""],
        ["half peak: time-to-key p99 ms", httk.get("p99_ms"),
         f"target < {r['half_peak_target_p99_ms']}, max {httk.get('max_ms')}"],
        [f"light ({light.get('rate', 0)}/s): time-to-key p50 ms", lttk.get("p50_ms"),
         f"target < {r['light_target_p50_ms']}"],
        ["light: time-to-key p99 ms", lttk.get("p99_ms"), f"max {lttk.get('max_ms')}"],
        ["peak RSS server MiB", r["peak_rss_mib"].get("server"), ""],
        ["peak RSS worker MiB", r["peak_rss_mib"].get("worker"), "largest worker process"],
        ["jobs added by Kinguin webhooks", b["jobs_enqueued_by_kinguin_webhooks"], "burst"],
    ]  # fmt: skip
    for group, ms in b.get("cpu_ms_per_order", {}).items():
        rows.append([f"burst: CPU ms per order, {group}", ms, ""])
    head = (
        f"bitloot bench pipeline: {r['orders']} orders in one burst, {r['workers']} workers x "
        f"concurrency {r['concurrency']}, Kinguin at zero latency, {r['cpu_count']} CPUs, "
        f"{r['date']}"
    )
    verdict = "met" if r["met"] else "NOT met"
    return "\n".join([head, "", format_table(["figure", "value", "note"], rows), "",
                      f"targets: {verdict}"])  # fmt: skip


def cmd_pipeline(args: argparse.Namespace, _settings: Settings) -> int:
    """Run the pipeline benchmark; exit 1 when an order failed or did not finish."""
    interrupt_on_sigterm()
    stack = BenchStack(args.data_dir, keep=args.keep)
    try:
        result = run_pipeline(stack, args)
    except BenchError as exc:
        print(f"bitloot bench pipeline: {exc}", file=sys.stderr)
        stack.keep = True
        print(f"bitloot bench pipeline: logs kept in {stack.root / 'logs'}", file=sys.stderr)
        return 1
    finally:
        stack.close()
    problems = [
        f"{phase}: {result[phase]['failed']} orders failed: {result[phase]['failure_reasons']}"
        for phase in ("burst", "half_peak", "light")
        if result[phase].get("failed")
    ]
    result["problems"] = problems
    emit(table(result), result, as_json=args.json)
    for problem in problems:
        print(f"bitloot bench pipeline: {problem}", file=sys.stderr)
    return 1 if problems else 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `bitloot bench pipeline`."""
    p = sub.add_parser("pipeline", help="paid orders to stored keys vs procrastinate no-op jobs")
    p.add_argument("--orders", type=positive_int, default=300, help="orders in the burst (N)")
    p.add_argument("--workers", type=positive_int, default=2, help="worker processes (W)")
    p.add_argument("--concurrency", type=positive_int, default=8, help="jobs per worker (C)")
    p.add_argument("--noop-jobs", type=positive_int, default=3000, help="baseline jobs")
    p.add_argument("--light-rate", type=float, default=10.0, help="orders/s in the light phase")
    p.add_argument(
        "--light-seconds", type=float, default=10.0, help="light phase length (0: skip it)"
    )
    p.add_argument(
        "--half-seconds",
        type=float,
        default=10.0,
        help="half-peak phase length: orders at half the burst's orders/s (0: skip it)",
    )
    p.add_argument("--warmup", type=int, default=20, help="unmeasured orders first")
    p.add_argument("--timeout", type=float, default=300.0, help="most seconds per phase")
    p.add_argument(
        "--no-kinguin-webhooks",
        dest="kinguin_webhooks",
        action="store_false",
        help="the simulator sends no order.status webhooks (each adds a fulfill_order job)",
    )
    p.add_argument("--profile", type=Path, default=None, help="py-spy the workers into DIR")
    p.add_argument(
        "--extra-sql",
        type=Path,
        default=None,
        help="an experiment: SQL to run after the migrations (e.g. a candidate index)",
    )
    p.add_argument(
        "--pg-stats",
        action="store_true",
        help="load pg_stat_statements and report PostgreSQL's top statements in the burst",
    )
    add_common_arguments(p)
    p.set_defaults(handler=cmd_pipeline)
