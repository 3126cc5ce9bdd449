"""`bitloot bench chaos`: N orders through the simulators with every fault on, while workers
are SIGKILLed, PostgreSQL restarts and the SMTP server goes away.

Set-up: the simulators, one `bitloot serve`, W `bitloot worker --concurrency C`, and a real
SMTP server (aiosmtpd) in this process. Kinguin delivers keys gradually after 0.5 s (so
fulfillment polls and waits for webhooks), and its next order.status webhooks are duplicated,
reordered and dropped. N orders are created through `POST /orders` (each opens a simulated
NOWPayments invoice), then paid at an even pace over `--pay-seconds`: every payment walks
waiting -> ... -> finished with each IPN sent twice, every third payment's IPNs in reverse
order, and failed deliveries retried for up to a minute (NOWPayments' own "recurrent
notifications" last longer).

Meanwhile the controller (`chaos_faults.Controller`) SIGKILLs a random worker every
`--kill-interval` seconds and starts it again, re-arms Kinguin bursts (3x 500, 2x 503,
3x 429 with Retry-After, 3 calls slowed by 1 s) every 5 s, stops the SMTP server for
`--smtp-down` seconds at the start and again right after it restarts PostgreSQL, once, when a
third of the orders are done. Kills and bursts stop after `--chaos-seconds` (a burst hits
whichever calls come next, so on the last few orders it would hit every attempt): what is not
final by then must recover by itself. Workers run with `BITLOOT_RECONCILE_AFTER_MINUTES=1`, so
the reconciler's pass is part of the run rather than ten minutes away. A worker that exits by
itself (one started while PostgreSQL is down refuses to start) is started again, as systemd's
`Restart=` would, and counted.

The run ends when every order is fulfilled or failed and every delivery email is sent or
failed, or at `--deadline` seconds after the first payment; then it reports whatever state.
`lost`: paid orders neither fulfilled nor failed. `duplicates`: Kinguin purchases beyond one
per orderExternalId (the simulator's own order list) plus delivery emails beyond one per order
received by the SMTP server. Targets: lost 0, duplicates 0; `ratio` is the share of paid
orders that reached a final state (target 1.0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
import uuid
from collections import Counter
from typing import Any

import aiohttp
import psycopg

from bitloot.bench.chaos_faults import ChaosPlan, Controller, MailSink
from bitloot.bench.common import (
    Stopwatch,
    add_common_arguments,
    emit,
    format_table,
    machine_info,
    positive_int,
    progress,
)
from bitloot.bench.pipeline import configure_sim, sim_post
from bitloot.bench.stack import PRODUCT_ID, BenchError, BenchStack, new_port
from bitloot.config import Settings
from bitloot.db.queries import QuerySet

C = QuerySet("bitloot.bench", "chaos.sql")
TARGET = 1.0
POLL = 0.5
SETTLE = 2.0  # seconds to wait after the end for stray resends before counting
IPN_RETRY_DELAYS_MS = [100, 300, 1000, 2000, 4000, 8000, 15000, 30000]


class Campaign:
    """One chaos run's services, orders and outcome."""

    def __init__(self, stack: BenchStack, args: argparse.Namespace) -> None:
        self.stack, self.args = stack, args
        api_port, sim_port = new_port(), new_port()
        self.api_url = f"http://127.0.0.1:{api_port}"
        self.sim_url = f"http://127.0.0.1:{sim_port}"
        self.ports = (api_port, sim_port)
        self.mail = MailSink(new_port())
        self.workers = [f"worker-{i}" for i in range(args.workers)]
        self.order_ids: list[str] = []
        self.paid = 0
        self.problems: list[str] = []

    # --- set-up -------------------------------------------------------------------------

    def start(self) -> None:
        """PostgreSQL, the SMTP server, the simulators (faulty), the API and the workers."""
        n, stack = self.args.orders, self.stack
        stack.start_database(api_url=self.api_url, sim_url=self.sim_url)
        stack.env.update({
            "BITLOOT_SMTP_URL": self.mail.url,
            "BITLOOT_RATE_LIMIT_ORDERS_PER_MINUTE": "0",
            "BITLOOT_KINGUIN_POLL_INTERVAL": "0.5",
            "BITLOOT_RECONCILE_AFTER_MINUTES": "1",
            "BITLOOT_WORKER_METRICS_PORT": "0",
        })  # fmt: skip
        self.mail.start()
        api_port, sim_port = self.ports
        stack.start_http("sim", "sim", "--port", str(sim_port), port=sim_port,
                         ready_path="/nowpayments/v1/status", module="bitloot")  # fmt: skip
        configure_sim(self.sim_url, stock=2 * n + 100, webhooks=True)
        sim_post(self.sim_url, "/kinguin/sim/delivery", {"delay": 0.5, "gradual": True})
        sim_post(self.sim_url, "/kinguin/sim/faults/webhooks", self.webhook_faults())
        stack.start_http("api", "serve", "--port", str(api_port), port=api_port,
                         ready_path="/readyz", module="bitloot")  # fmt: skip
        for name in self.workers:
            stack.spawn(name, "worker", *self.worker_args())

    def worker_args(self) -> tuple[str, ...]:
        return ("--concurrency", str(self.args.concurrency))

    def webhook_faults(self) -> dict[str, int]:
        n = self.args.orders
        return {"duplicate": n // 4 + 1, "reorder": n // 4 + 1, "drop": n // 10 + 1}

    async def create_orders(self, http: aiohttp.ClientSession) -> None:
        """N orders through the API (1 or 2 keys each), fault-free: the faults start after."""
        gate = asyncio.Semaphore(8)
        run = uuid.uuid4().hex[:8]

        async def one(i: int) -> str:
            body = {"email": f"chaos+{i}@example.com",
                    "items": [{"productId": PRODUCT_ID, "qty": 1 + i % 2}]}  # fmt: skip
            headers = {"Idempotency-Key": f"chaos-{run}-{i}"}
            async with gate:
                for _ in range(3):
                    async with http.post(f"{self.api_url}/orders", json=body,
                                         headers=headers) as resp:  # fmt: skip
                        if resp.status == 201:
                            return str((await resp.json())["id"])
                    await asyncio.sleep(0.5)
            raise BenchError(f"order {i} could not be created; see {self.stack.log_path('api')}")

        self.order_ids = list(await asyncio.gather(*(one(i) for i in range(self.args.orders))))

    # --- the campaign -------------------------------------------------------------------

    async def pay(self, http: aiohttp.ClientSession, invoices: dict[str, str]) -> None:
        """Pay every order through the NOWPayments simulator, at an even pace."""
        clock = Stopwatch()
        step = self.args.pay_seconds / max(1, len(self.order_ids))
        for i, oid in enumerate(self.order_ids):
            delay = i * step - clock.elapsed()
            if delay > 0:
                await asyncio.sleep(delay)
            body = {"wait": False, "interval_ms": 50, "retry_delays_ms": IPN_RETRY_DELAYS_MS,
                    "faults": {"duplicate": 1, "reorder": i % 3 == 0}}  # fmt: skip
            url = f"{self.sim_url}/nowpayments/sim/invoices/{invoices[oid]}/pay"
            async with http.post(url, json=body) as resp:
                if resp.status == 201:
                    self.paid += 1
                else:
                    self.problems.append(f"paying order {oid}: simulator answered {resp.status}")

    async def run(self) -> dict[str, Any]:
        """Create, pay under faults, wait for the end or the deadline; the outcome."""
        self.start()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            await self.create_orders(http)
            with self.stack.connect() as conn:
                rows = conn.execute(C["invoices"], {"ids": self.order_ids}).fetchall()
            invoices = {str(oid): str(iid) for oid, iid in rows}
            clock = Stopwatch()
            started = time.monotonic()
            controller = Controller(self.stack, self.mail, self.sim_url, self.plan(), clock)
            chaos = asyncio.create_task(controller.run())
            paying = asyncio.create_task(self.pay(http, invoices))
            try:
                timed_out = await self.wait(controller, chaos, paying, clock)
            finally:
                seconds = clock.elapsed()
                controller.stop.set()
                await asyncio.gather(chaos, return_exceptions=True)
                paying.cancel()
                await asyncio.gather(paying, return_exceptions=True)
            if chaos.done() and not chaos.cancelled() and chaos.exception() is not None:
                raise BenchError(f"the chaos controller failed: {chaos.exception()!r}")
            await asyncio.sleep(SETTLE)
            purchases = await self.kinguin_purchases(http)
        return self.outcome(purchases, controller, seconds, timed_out, started)

    def plan(self) -> ChaosPlan:
        n = self.args.orders
        return ChaosPlan(
            workers=self.workers,
            worker_args=self.worker_args(),
            kill_interval=self.args.kill_interval,
            burst_interval=5.0,
            smtp_down=self.args.smtp_down,
            restart_when_done=max(1, n // 3),
            restart_after=self.args.pay_seconds + 20,
            chaos_seconds=self.args.chaos_seconds,
        )

    async def wait(
        self, controller: Controller, chaos: asyncio.Task[None], paying: asyncio.Task[None],
        clock: Stopwatch,
    ) -> bool:  # fmt: skip
        """Poll until every order and email is final (and the planned faults have happened);
        True when the deadline came first."""
        n = len(self.order_ids)
        bar = progress(n, "orders final", unit="order")
        final = 0
        try:
            while True:
                progress_row = self.read_progress()
                if progress_row is not None:
                    now_final, fulfilled, emails_final = progress_row
                    bar.update(now_final - final)
                    final = controller.done_orders = now_final
                    finished = (
                        final == n and emails_final >= fulfilled and paying.done()
                        and controller.restarted.is_set() and controller.outages_done.is_set()
                    )  # fmt: skip
                    if finished:
                        return False
                for name in ("api", "sim"):
                    self.stack.check_alive(name)
                if chaos.done():
                    chaos.result()  # raises what went wrong
                    raise BenchError("the chaos controller stopped early")
                if clock.elapsed() > self.args.deadline:
                    return True
                await asyncio.sleep(POLL)
        finally:
            bar.close()

    def read_progress(self) -> tuple[int, int, int] | None:
        """(orders final, fulfilled, emails final); None while the database is away."""
        try:
            with psycopg.connect(self.stack.db_url, autocommit=True, connect_timeout=2) as conn:
                row = conn.execute(C["progress"], {"ids": self.order_ids}).fetchone()
        except psycopg.OperationalError:
            return None
        return (int(row[0]), int(row[1]), int(row[2])) if row else None

    async def kinguin_purchases(self, http: aiohttp.ClientSession) -> Counter[str]:
        """Kinguin orders per orderExternalId, from the simulator's own list."""
        async with http.get(f"{self.sim_url}/kinguin/sim/orders") as resp:
            orders = (await resp.json())["orders"]
        return Counter(str(o.get("orderExternalId")) for o in orders)

    # --- the outcome --------------------------------------------------------------------

    def outcome(
        self,
        purchases: Counter[str],
        controller: Controller,
        seconds: float,
        timed_out: bool,
        started: float,
    ) -> dict[str, Any]:
        with self.stack.connect() as conn:
            states = conn.execute(C["order_states"], {"ids": self.order_ids}).fetchall()
            outbox = dict(conn.execute(C["outbox_states"], {"ids": self.order_ids}).fetchall())
            hooks = dict(conn.execute(C["webhook_counts"], {"ids": self.order_ids}).fetchall())
        fulfilled = [str(r[0]) for r in states if r[2] == "fulfilled"]
        failed = [r for r in states if r[2] == "failed"]
        lost = [r for r in states if r[2] not in ("fulfilled", "failed")]
        messages, distinct = self.mail.per_order()
        dup_purchases = sum(max(0, purchases[o] - 1) for o in self.order_ids)
        dup_emails = sum(max(0, messages[o] - 1) for o in self.order_ids)
        same_id = sum(messages[o] - distinct[o] for o in self.order_ids)
        repeated = {o: self.mail.arrivals_of(o, started) for o in self.order_ids if messages[o] > 1}
        final = len(fulfilled) + len(failed)
        machine = machine_info(self.stack.postgres_version())
        return {
            "benchmark": "chaos",
            "orders": len(self.order_ids),
            "paid": self.paid,
            "workers": self.args.workers,
            "concurrency": self.args.concurrency,
            "fulfilled": len(fulfilled),
            "failed": len(failed),
            "failure_reasons": dict(Counter(str(r[3]) for r in failed)),
            "lost": len(lost),
            "lost_orders": [
                {"id": str(r[0]), "status": r[1], "fulfillment_status": r[2]} for r in lost[:20]
            ],
            "duplicates": dup_purchases + dup_emails,
            "duplicate_purchases": dup_purchases,
            "duplicate_emails": dup_emails,
            "duplicate_emails_same_message_id": same_id,
            "duplicate_email_arrivals_s": dict(list(repeated.items())[:20]),
            "kinguin_orders": sum(purchases[o] for o in self.order_ids),
            "emails_received": sum(messages[o] for o in self.order_ids),
            "emails_missing": sum(1 for o in fulfilled if messages[o] == 0),
            "outbox": {str(k): int(v) for k, v in outbox.items()},
            "webhook_events": {str(k): int(v) for k, v in hooks.items()},
            "seconds": round(seconds, 1),
            "deadline": self.args.deadline,
            "timed_out": timed_out,
            "faults": {
                **controller.log.as_json(),
                "kill_interval": self.args.kill_interval,
                "chaos_seconds": self.args.chaos_seconds,
                "ipn": {
                    "duplicate": "every IPN once more",
                    "reorder": "every 3rd payment",
                    "retry_delays_ms": IPN_RETRY_DELAYS_MS,
                },
                "kinguin_webhooks": self.webhook_faults(),
                "kinguin_delivery": {"delay": 0.5, "gradual": True},
            },
            "ratio": round(final / self.paid, 3) if self.paid else 0.0,
            "target": TARGET,
            "targets": {"lost": 0, "duplicates": 0},
            "met": not lost and dup_purchases + dup_emails == 0 and self.paid == len(states),
            "cpu_count": machine["cpu_count"],
            "versions": machine["versions"],
            "platform": machine["platform"],
            "date": machine["date"],
        }


def table(r: dict[str, Any]) -> str:
    f = r["faults"]
    pg = f["pg_restart"]
    outages = ", ".join(f"{o['at_s']} s" for o in f["smtp_outages"])
    reasons = "; ".join(f"{n}x {k}" for k, n in r["failure_reasons"].items())
    rows: list[list[Any]] = [
        ["orders paid", r["paid"], f"of {r['orders']} created"],
        ["fulfilled", r["fulfilled"], ""],
        ["failed", r["failed"], reasons],
        ["lost (paid, neither fulfilled nor failed)", r["lost"], "target 0"],
        ["duplicates", r["duplicates"], f"target 0: {r['duplicate_purchases']} Kinguin "
         f"purchases, {r['duplicate_emails']} emails"],
        ["Kinguin orders placed", r["kinguin_orders"], "one per order expected"],
        ["delivery emails received", r["emails_received"],
         f"{r['emails_missing']} fulfilled orders without one"],
        ["seconds to settle", r["seconds"],
         "deadline reached" if r["timed_out"] else f"deadline {r['deadline']} s"],
        ["worker SIGKILLs", f["worker_kills"],
         f"every {f['kill_interval']} s for at most {f['chaos_seconds']} s, restarted"],
        ["PostgreSQL restart at s", pg.get("at_s"), f"down {pg.get('down_s')} s"],
        ["SMTP outages", len(f["smtp_outages"]), f"at {outages}" if outages else ""],
        ["Kinguin 5xx/429/latency bursts", f["kinguin_bursts"],
         f"every 5 s for at most {f['chaos_seconds']} s"],
    ]  # fmt: skip
    if f["unplanned_exits"]:
        rows.append(["workers exited by themselves", sum(f["unplanned_exits"].values()),
                     "restarted"])  # fmt: skip
    head = (
        f"bitloot bench chaos: {r['orders']} orders, {r['workers']} workers x concurrency "
        f"{r['concurrency']}, every fault on, {r['cpu_count']} CPUs, {r['date']}"
    )
    verdict = "met" if r["met"] else "NOT met"
    return "\n".join([head, "", format_table(["figure", "value", "note"], rows), "",
                      f"targets (lost 0, duplicates 0): {verdict}"])  # fmt: skip


def cmd_chaos(args: argparse.Namespace, _settings: Settings) -> int:
    """Run the chaos campaign; exit 1 when the run itself broke (not for a missed target)."""
    stack = BenchStack(args.data_dir, keep=args.keep)
    campaign = Campaign(stack, args)
    try:
        result = asyncio.run(campaign.run())
    except (BenchError, RuntimeError, OSError, psycopg.Error, aiohttp.ClientError) as exc:
        print(f"bitloot bench chaos: {exc}", file=sys.stderr)
        stack.keep = True
        print(f"bitloot bench chaos: logs kept in {stack.root / 'logs'}", file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(Exception):
            campaign.mail.stop()
        stack.close()
    result["problems"] = campaign.problems
    emit(table(result), result, as_json=args.json)
    for problem in campaign.problems:
        print(f"bitloot bench chaos: {problem}", file=sys.stderr)
    return 1 if campaign.problems else 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `bitloot bench chaos`."""
    p = sub.add_parser("chaos", help="orders under every fault, worker kills, a database restart")
    p.add_argument("--orders", type=positive_int, default=200, help="orders (N)")
    p.add_argument("--workers", type=positive_int, default=2, help="worker processes (W)")
    p.add_argument("--concurrency", type=positive_int, default=8, help="jobs per worker (C)")
    p.add_argument("--pay-seconds", type=float, default=10.0, help="payments spread over this")
    p.add_argument("--kill-interval", type=float, default=3.0,
                   help="seconds between two worker SIGKILLs")  # fmt: skip
    p.add_argument("--smtp-down", type=float, default=4.0, help="seconds per SMTP outage")
    p.add_argument(
        "--chaos-seconds",
        type=float,
        default=60.0,
        help="worker kills and Kinguin bursts stop this long after the first payment",
    )
    p.add_argument(
        "--deadline",
        type=float,
        default=300.0,
        help="most seconds after the first payment; then report whatever state",
    )
    add_common_arguments(p)
    p.set_defaults(handler=cmd_chaos)
