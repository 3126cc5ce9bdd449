"""`bitloot bench ipn`: signed, unique NOWPayments IPNs against `bitloot serve`.

For each server process count (1, then 2): N orders are inserted in SQL (one batch, status
`waiting`), N IPN bodies are signed for them with status `finished`, and the load
generator posts each exactly once at concurrency C. `finished` is the real hot path: in one
transaction the webhook is stored (dedup), the payment upserted, the order moved to `paid`
and `fulfill_order` enqueued. Workers are not running, so the jobs only accumulate and the
figure is the HTTP side alone. Afterwards every order is checked to be `paid` with its job.

Two server processes listen on two ports and the client spreads its connections over them
round-robin: exact balance, no product change (SO_REUSEPORT balances by a hash of the
4-tuple, which with 32 keep-alive connections can leave one process with noticeably more).

The baseline, in the same run on the same database: `bitloot.bench.baseline`, an aiohttp
app that verifies nothing and does one INSERT in one transaction, with the same process
count, pool size, requests and concurrency. ratio = BitLoot req/s / baseline req/s; the
reported `ratio` is the lowest over the process counts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bitloot.bench.common import (
    CpuMeter,
    Profiler,
    add_common_arguments,
    emit,
    format_table,
    interrupt_on_sigterm,
    latency_ms,
    machine_info,
    positive_int,
)
from bitloot.bench.stack import MAX_COST, PRICE, PRODUCT_ID, BenchError, BenchStack, Q, new_port
from bitloot.config import Settings
from bitloot.nowpayments.signature import RawNumber, dump_json, sign_ipn

TARGET = 0.5
IPN_PATH = "/webhooks/nowpayments"
BTC_PER_EUR = "0.000016"


@dataclass
class IpnBatch:
    """Orders waiting for payment and the signed IPN that pays each."""

    order_ids: list[uuid.UUID]
    requests: list[dict[str, Any]]


class PaymentIds:
    """Unique NOWPayments payment ids across every batch of a run."""

    def __init__(self) -> None:
        self.next = 5_000_000_000

    def take(self) -> int:
        self.next += 1
        return self.next


def create_waiting_orders(stack: BenchStack, n: int) -> list[uuid.UUID]:
    """N one-item orders in `waiting`, in three statements and one transaction."""
    with stack.connect() as conn, conn.transaction():
        conn.execute("SELECT set_config('bitloot.actor', 'bench', true)")
        rows = conn.execute(Q["insert_orders"], {"n": n, "price": PRICE}).fetchall()
        ids = [row[0] for row in rows]
        conn.execute(
            Q["insert_order_items"],
            {"ids": ids, "product_id": PRODUCT_ID, "price": PRICE, "max_cost": MAX_COST},
        )
        conn.execute(Q["orders_waiting"], {"ids": ids})
    return ids


def ipn_body(order_id: uuid.UUID, payment_id: int) -> str:
    """A `finished` IPN paying the order in full, shaped like the simulator's (docs 2.7)."""
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    body = {
        "payment_id": RawNumber(str(payment_id)),
        "parent_payment_id": None,
        "invoice_id": RawNumber(str(payment_id + 1_000_000_000)),
        "payment_status": "finished",
        "pay_address": "bc1qbenchbenchbenchbenchbenchbenchbench0",
        "payin_extra_id": None,
        "price_amount": RawNumber(str(PRICE)),
        "price_currency": "eur",
        "pay_amount": RawNumber(BTC_PER_EUR),
        "actually_paid": RawNumber(BTC_PER_EUR),
        "actually_paid_at_fiat": RawNumber(str(PRICE)),
        "pay_currency": "btc",
        "order_id": str(order_id),
        "order_description": "BitLoot order",
        "purchase_id": str(payment_id + 2_000_000_000),
        "outcome_amount": RawNumber("0.0000158"),
        "outcome_currency": "btc",
        "payment_extra_ids": None,
        "updated_at": RawNumber(str(now_ms)),
    }
    return dump_json(body)


def make_batch(stack: BenchStack, n: int, ids: PaymentIds) -> IpnBatch:
    """Orders in SQL and one signed, unique IPN for each."""
    order_ids = create_waiting_orders(stack, n)
    requests = []
    for oid in order_ids:
        body = ipn_body(oid, ids.take())
        signature = sign_ipn(body.encode("utf-8"), stack.ipn_secret)
        requests.append({"body": body, "headers": {"x-nowpayments-sig": signature}})
    return IpnBatch(order_ids, requests)


def run_load(
    stack: BenchStack,
    batch: IpnBatch,
    ports: list[int],
    *,
    concurrency: int,
    client: str,
    label: str,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Run the load generator in its own process; its measurements."""
    work = stack.root / "bench"
    work.mkdir(parents=True, exist_ok=True)
    stem = f"{label}-{uuid.uuid4().hex[:8]}"
    infile, outfile = work / f"{stem}.in.json", work / f"{stem}.out.json"
    infile.write_text(json.dumps({"path": IPN_PATH, "requests": batch.requests}))
    argv = [
        sys.executable, "-m", "bitloot.bench.loadgen",
        "--input", str(infile), "--output", str(outfile),
        "--ports", ",".join(str(p) for p in ports),
        "--concurrency", str(concurrency), "--client", client, "--desc", label,
    ]  # fmt: skip
    if show_progress:
        argv.append("--progress")
    proc = subprocess.run(argv, env=stack.env, stdout=subprocess.DEVNULL, timeout=900, check=False)
    if proc.returncode != 0 or not outfile.exists():
        raise BenchError(f"the load generator failed ({label}, status {proc.returncode})")
    data: dict[str, Any] = json.loads(outfile.read_text())
    infile.unlink()
    outfile.unlink()
    return data


def summarise(data: dict[str, Any], n: int) -> dict[str, Any]:
    """req/s and latencies of one load run; failures counted."""
    latencies: list[float] = data["latencies"]
    ok = int(data["statuses"].get("200", 0))
    return {
        "requests": n,
        "ok": ok,
        "failed": n - ok,
        "statuses": data["statuses"],
        "errors": data["errors"],
        "sample_failure": data["sample_failure"],
        "seconds": round(data["elapsed"], 3),
        "rps": round(n / data["elapsed"], 1) if data["elapsed"] else 0.0,
        **latency_ms(latencies),
    }


def verify_paid(stack: BenchStack, order_ids: list[uuid.UUID]) -> dict[str, int]:
    """How many of the orders are paid, and how many have their fulfillment job."""
    with stack.connect() as conn:
        paid = conn.execute(Q["count_paid"], {"ids": order_ids}).fetchone()
        jobs = conn.execute(Q["count_jobs_for"], {"ids": [str(o) for o in order_ids]}).fetchone()
    return {"paid": int(paid[0]) if paid else 0, "with_job": int(jobs[0]) if jobs else 0}


def _start_servers(stack: BenchStack, kind: str, processes: int) -> tuple[list[str], list[int]]:
    names, ports = [], []
    for i in range(processes):
        port = new_port()
        name = f"{kind}-{processes}p-{i}"
        if kind == "bitloot":
            stack.start_http(
                name, "serve", "--port", str(port), port=port, ready_path="/readyz",
                module="bitloot",
            )  # fmt: skip
        else:
            stack.start_http(
                name, "--port", str(port), port=port, ready_path="/readyz",
                module="bitloot.bench.baseline",
            )  # fmt: skip
        names.append(name)
        ports.append(port)
    return names, ports


def measure(
    stack: BenchStack, kind: str, processes: int, args: argparse.Namespace, ids: PaymentIds
) -> dict[str, Any]:
    """Start `processes` servers of `kind`, warm them up, measure N requests, stop them."""
    names, ports = _start_servers(stack, kind, processes)
    try:
        if args.warmup:
            warm = make_batch(stack, args.warmup, ids)
            run_load(
                stack, warm, ports, concurrency=args.concurrency, client=args.client,
                label=f"warm-up {kind} x{processes}", show_progress=False,
            )  # fmt: skip
        batch = make_batch(stack, args.requests, ids)
        time.sleep(0.2)  # let the warm-up's last commits and log writes settle
        profiler = None
        if args.profile is not None and kind == "bitloot":
            profiler = Profiler(args.profile / f"{processes}p")
            for name in names:
                profiler.attach(name, stack.procs[name].pid)
        cpu = CpuMeter()
        for name in names:
            cpu.watch("server", stack.procs[name].pid)
        postmaster = stack.postmaster_pid()
        if postmaster is not None:
            cpu.watch("postgres", postmaster, tree=True)
        stats = args.pg_stats and kind == "bitloot"
        if stats:
            stack.reset_statement_stats()
            lsn = stack.wal_position()
        cpu.start()
        data = run_load(
            stack, batch, ports, concurrency=args.concurrency, client=args.client,
            label=f"{kind} x{processes}",
        )  # fmt: skip
        cpu_seconds = cpu.stop()
        if stats:
            pg = stack.pg_usage_since(lsn, args.requests)
        if profiler is not None:
            profiler.detach()
        for name in names:
            stack.check_alive(name)
    finally:
        stack.stop(*names)
    result = summarise(data, args.requests)
    result["cpu_ms_per_request"] = {
        k: round(1000 * v / args.requests, 3) for k, v in cpu_seconds.items()
    }
    if stats:
        result["pg_stats"] = pg
    if kind == "bitloot":
        result["verified"] = verify_paid(stack, batch.order_ids)
        if profiler is not None:
            result["profile"] = {"dir": str(profiler.dir), **profiler.summary()}
    return result


def run_ipn(stack: BenchStack, args: argparse.Namespace) -> dict[str, Any]:
    """Every phase; the JSON result."""
    stack.start_database()
    if args.pg_stats:
        stack.enable_statement_stats()
    ids = PaymentIds()
    rows = []
    for processes in args.processes:
        ours = measure(stack, "bitloot", processes, args, ids)
        base = measure(stack, "baseline", processes, args, ids)
        ratio = round(ours["rps"] / base["rps"], 3) if base["rps"] else 0.0
        rows.append({"processes": processes, "bitloot": ours, "baseline": base, "ratio": ratio})
    ratio = min(r["ratio"] for r in rows)
    machine = machine_info(stack.postgres_version())
    return {
        "benchmark": "ipn",
        "requests": args.requests,
        "concurrency": args.concurrency,
        "warmup": args.warmup,
        "client": args.client,
        "ipn_status": "finished",
        "results": rows,
        "ratio": ratio,
        "target": TARGET,
        "met": ratio >= TARGET,
        "cpu_count": machine["cpu_count"],
        "versions": machine["versions"],
        "load_average_1m": machine["load_average_1m"],
        "platform": machine["platform"],
        "date": machine["date"],
    }


def table(result: dict[str, Any]) -> str:
    headers = ["server", "procs", "req/s", "p50 ms", "p99 ms", "max ms", "failed", "ratio"]
    rows: list[list[Any]] = []
    for r in result["results"]:
        for kind in ("bitloot", "baseline"):
            m = r[kind]
            ratio = r["ratio"] if kind == "bitloot" else None
            rows.append(
                [kind, r["processes"], m["rps"], m["p50_ms"], m["p99_ms"], m["max_ms"],
                 m["failed"], ratio]
            )  # fmt: skip
    head = (
        f"bitloot bench ipn: {result['requests']} signed `finished` IPNs at concurrency "
        f"{result['concurrency']} ({result['client']} client), {result['cpu_count']} CPUs, "
        f"{result['date']}"
    )
    verdict = "met" if result["met"] else "NOT met"
    foot = f"ratio (lowest) {result['ratio']:.3f}, target >= {result['target']}: {verdict}"
    return "\n".join([head, "", format_table(headers, rows), "", foot])


def check(result: dict[str, Any]) -> list[str]:
    """Problems that make the figures invalid (failed requests, orders not paid)."""
    problems = []
    for r in result["results"]:
        for kind in ("bitloot", "baseline"):
            m = r[kind]
            if m["failed"]:
                problems.append(
                    f"{kind} x{r['processes']}: {m['failed']} requests failed "
                    f"({m['errors'] or ''} {m['sample_failure'] or ''})"
                )
        verified = r["bitloot"]["verified"]
        n = r["bitloot"]["requests"]
        if verified["paid"] != n or verified["with_job"] != n:
            problems.append(f"bitloot x{r['processes']}: {verified} of {n} orders paid/with job")
    return problems


def cmd_ipn(args: argparse.Namespace, _settings: Settings) -> int:
    """Run the IPN benchmark; exit 1 when a request failed or an order was not paid."""
    interrupt_on_sigterm()
    stack = BenchStack(args.data_dir, keep=args.keep)
    try:
        result = run_ipn(stack, args)
    except (BenchError, RuntimeError) as exc:
        print(f"bitloot bench ipn: {exc}", file=sys.stderr)
        stack.keep = True
        print(f"bitloot bench ipn: logs kept in {stack.root / 'logs'}", file=sys.stderr)
        return 1
    finally:
        stack.close()
    problems = check(result)
    result["problems"] = problems
    emit(table(result), result, as_json=args.json)
    for problem in problems:
        print(f"bitloot bench ipn: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _process_counts(text: str) -> list[int]:
    counts = [int(p) for p in text.split(",") if p.strip()]
    if not counts or any(c < 1 for c in counts):
        raise argparse.ArgumentTypeError("a comma list of process counts, e.g. 1,2")
    return counts


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `bitloot bench ipn`."""
    p = sub.add_parser("ipn", help="signed IPNs against bitloot serve vs a bare INSERT endpoint")
    p.add_argument("--requests", type=positive_int, default=2000, help="IPNs per phase (N)")
    p.add_argument("--concurrency", type=positive_int, default=32, help="connections (C)")
    p.add_argument(
        "--processes", type=_process_counts, default=[1, 2], help="server process counts"
    )
    p.add_argument("--warmup", type=int, default=200, help="unmeasured requests first, per phase")
    p.add_argument("--client", choices=["raw", "aiohttp"], default="raw", help="load generator")
    p.add_argument("--profile", type=Path, default=None, help="py-spy the BitLoot servers into DIR")
    p.add_argument(
        "--pg-stats",
        action="store_true",
        help="load pg_stat_statements; report round trips, WAL bytes and top statements per IPN",
    )
    add_common_arguments(p)
    p.set_defaults(handler=cmd_ipn)
