"""The faults of `bitloot bench chaos`: a real SMTP server that goes down and comes back, and
the controller that kills workers, restarts PostgreSQL and re-arms Kinguin's error bursts.

Everything here acts on processes and servers on this machine only (loopback, the benchmark's
own data directory); the controller stops by itself when told or at the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from typing import Any

import aiohttp

from bitloot.bench.common import Stopwatch
from bitloot.bench.stack import BenchError, BenchStack
from bitloot.db.embedded import ensure_embedded_server, stop_embedded_server

# delivery_message_id(): <delivery-{outbox id}-{order id}@domain>
_MESSAGE_ID = re.compile(r"<delivery-\d+-(?P<order>[0-9a-f-]{36})@")


class MailSink:
    """aiosmtpd in this process, recording each message's Message-ID and order."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[tuple[str, str]] = []  # (order id, Message-ID)
        self.arrivals: list[float] = []  # time.monotonic() of each message, same order
        self.lock = threading.Lock()
        self._controller: Any = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        headers = BytesHeaderParser().parsebytes(bytes(envelope.content))
        message_id = str(headers.get("Message-ID", ""))
        match = _MESSAGE_ID.search(message_id)
        if match is None:
            return "250 OK"  # a customer notice (receipt, ...): the benchmark counts deliveries
        with self.lock:
            self.received.append((match.group("order"), message_id))
            self.arrivals.append(time.monotonic())
        return "250 OK"

    def start(self) -> None:
        try:
            from aiosmtpd.controller import Controller
        except ImportError:
            raise BenchError(
                "bitloot bench chaos runs a real SMTP server and needs aiosmtpd: "
                "pip install aiosmtpd (it is in the dev extra)"
            ) from None
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def arrivals_of(self, order_id: str, since: float) -> list[float]:
        """When each message of the order arrived, in seconds after `since` (monotonic)."""
        with self.lock:
            pairs = list(zip(self.received, self.arrivals, strict=True))
        return [round(at - since, 2) for (order, _), at in pairs if order == order_id]

    def per_order(self) -> tuple[Counter[str], Counter[str]]:
        """Messages per order, and distinct Message-IDs per order."""
        with self.lock:
            received = list(self.received)
        messages = Counter(order for order, _ in received)
        distinct = Counter(order for order, _ in set(received))
        return messages, distinct


@dataclass
class ChaosPlan:
    """When and how hard the controller strikes."""

    workers: list[str]
    worker_args: tuple[str, ...]
    kill_interval: float
    burst_interval: float
    smtp_down: float
    restart_when_done: int  # restart PostgreSQL once this many orders are final
    restart_after: float  # ... or this many seconds after the first payment, if sooner
    chaos_seconds: float  # kills and Kinguin bursts stop then: the rest is recovery
    pg_down: float = 1.0


@dataclass
class ChaosLog:
    """What the controller did, for the report."""

    kills: int = 0
    kill_times: list[float] = field(default_factory=list)
    unplanned_exits: dict[str, int] = field(default_factory=dict)
    pg_restart: dict[str, float] = field(default_factory=dict)
    smtp_outages: list[dict[str, float]] = field(default_factory=list)
    kinguin_bursts: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "worker_kills": self.kills,
            "kill_times_s": self.kill_times,
            "unplanned_exits": self.unplanned_exits,
            "pg_restart": self.pg_restart,
            "smtp_outages": self.smtp_outages,
            "kinguin_bursts": self.kinguin_bursts,
        }


class Controller:
    """Kills a random worker (SIGKILL) every `kill_interval` and starts it again, takes the
    SMTP server down twice (at the start, and right after the database restart), restarts
    PostgreSQL once mid-run, and re-arms Kinguin 5xx/429/latency bursts. Kills and bursts go
    on for `chaos_seconds` at most: a burst hits the next calls, whoever makes them, so once
    only a few orders remain it would hit every one of their attempts, and with workers dying
    faster than a slowed job finishes nothing could ever complete."""

    def __init__(
        self, stack: BenchStack, mail: MailSink, sim_url: str, plan: ChaosPlan, clock: Stopwatch
    ) -> None:
        self.stack, self.mail, self.sim_url, self.plan, self.clock = (
            stack, mail, sim_url, plan, clock
        )  # fmt: skip
        self.log = ChaosLog()
        self.done_orders = 0
        self.stop = asyncio.Event()
        self.restarted = asyncio.Event()
        self.outages_done = asyncio.Event()
        self._db_lock = asyncio.Lock()  # a worker is not started while the database is down
        self._rng = random.Random(os.getpid())  # noqa: S311 - chaos, not cryptography

    async def run(self) -> None:
        """Every fault loop until `stop` is set (then SMTP is up and every worker runs)."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            loops = [self._kills(), self._bursts(http), self._database(), self._smtp()]
            try:
                await asyncio.gather(*loops)
            finally:
                if not self.mail.running:
                    await asyncio.to_thread(self.mail.start)
                await asyncio.to_thread(self._revive_dead_workers)

    async def _sleep(self, seconds: float) -> bool:
        """Wait; True when told to stop meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), timeout=seconds)
        return self.stop.is_set()

    async def _striking(self, interval: float) -> bool:
        """Wait `interval`; True while the repeated faults (kills, bursts) should go on."""
        stopped = await self._sleep(interval)
        return not stopped and self.clock.elapsed() < self.plan.chaos_seconds

    # --- workers ------------------------------------------------------------------------

    async def _kills(self) -> None:
        while await self._striking(self.plan.kill_interval):
            async with self._db_lock:
                await asyncio.to_thread(self._revive_dead_workers)
                victim = self._rng.choice(self.plan.workers)
                self.log.kill_times.append(round(self.clock.elapsed(), 2))
                await asyncio.to_thread(self._kill_and_restart, victim)
                self.log.kills += 1
        while not await self._sleep(1.0):  # the window is over; keep every worker running
            async with self._db_lock:
                await asyncio.to_thread(self._revive_dead_workers)

    def _kill_and_restart(self, name: str) -> None:
        proc = self.stack.procs.get(name)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        self.stack.spawn(name, "worker", *self.plan.worker_args)

    def _revive_dead_workers(self) -> None:
        """A worker that exited by itself (e.g. started while the database was down) is
        started again, as systemd's Restart= would; each is counted."""
        for name in self.plan.workers:
            proc = self.stack.procs.get(name)
            if proc is None or proc.poll() is not None:
                self.log.unplanned_exits[name] = self.log.unplanned_exits.get(name, 0) + 1
                self.stack.spawn(name, "worker", *self.plan.worker_args)

    # --- PostgreSQL ---------------------------------------------------------------------

    async def _database(self) -> None:
        while self.done_orders < self.plan.restart_when_done and self.clock.elapsed() < (
            self.plan.restart_after
        ):
            if await self._sleep(0.2):
                return
        async with self._db_lock:
            at = self.clock.elapsed()
            down = Stopwatch()
            await asyncio.to_thread(stop_embedded_server, self.stack.root)
            await asyncio.sleep(self.plan.pg_down)
            url = await asyncio.to_thread(ensure_embedded_server, self.stack.root)
            if url != self.stack.db_url:
                raise BenchError(f"PostgreSQL came back at another address: {url}")
            self.log.pg_restart = {"at_s": round(at, 1), "down_s": round(down.elapsed(), 2)}
        self.restarted.set()

    # --- SMTP ---------------------------------------------------------------------------

    async def _smtp(self) -> None:
        await self._outage()
        while not self.restarted.is_set():
            if await self._sleep(0.2):
                self.outages_done.set()
                return
        await self._outage()
        self.outages_done.set()

    async def _outage(self) -> None:
        at = self.clock.elapsed()
        await asyncio.to_thread(self.mail.stop)
        await self._sleep(self.plan.smtp_down)
        await asyncio.to_thread(self.mail.start)
        self.log.smtp_outages.append({"at_s": round(at, 1), "down_s": self.plan.smtp_down})

    # --- Kinguin ------------------------------------------------------------------------

    async def _bursts(self, http: aiohttp.ClientSession) -> None:
        faults = f"{self.sim_url}/kinguin/sim/faults"
        bursts = [
            ("errors", {"status": 500, "count": 3}),
            ("errors", {"status": 503, "count": 2}),
            ("errors", {"status": 429, "count": 3, "retry_after": 0.2}),
            ("latency", {"seconds": 1.0, "count": 3}),
        ]
        while True:
            for kind, body in bursts:
                async with http.post(f"{faults}/{kind}", json=body) as resp:
                    if resp.status >= 300:
                        raise BenchError(f"the Kinguin simulator refused a fault: {resp.status}")
            self.log.kinguin_bursts += 1
            if not await self._striking(self.plan.burst_interval):
                return
