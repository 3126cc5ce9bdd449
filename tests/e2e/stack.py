"""A whole BitLoot on loopback for end-to-end tests: simulators, API servers and workers
as real subprocesses (so a test can SIGKILL them), sharing the test's database."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

from bitloot.sim.kinguin_catalog import IMAGE_PRODUCT_ID, MIXED_PRODUCT_ID, TEXT_PRODUCT_ID
from bitloot.vault.crypto import generate_master_key

JWT_SECRET = "e2e-jwt-secret-that-is-long-enough-for-hs256!!"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    """The processes of one test and how to reach them."""

    db_url: str
    data_dir: Path
    sim_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    master_keys: str = field(default_factory=lambda: generate_master_key("k1"))
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def sim(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("BITLOOT_")}
        base.pop("DATABASE_URL", None)
        return {
            **base,
            "DATABASE_URL": self.db_url,
            "BITLOOT_DATA_DIR": str(self.data_dir),
            "BITLOOT_PUBLIC_URL": self.api,
            "BITLOOT_MASTER_KEYS": self.master_keys,
            "BITLOOT_JWT_SECRET": JWT_SECRET,
            "BITLOOT_NOWPAYMENTS_API_URL": f"{self.sim}/nowpayments/v1",
            "BITLOOT_NOWPAYMENTS_API_KEY": "e2e-np-key",
            "BITLOOT_NOWPAYMENTS_IPN_SECRET": "e2e-ipn-secret",
            "BITLOOT_KINGUIN_API_URL": f"{self.sim}/kinguin",
            "BITLOOT_KINGUIN_API_KEY": "e2e-kinguin-key",
            "BITLOOT_KINGUIN_WEBHOOK_SECRET": "e2e-kinguin-webhook-secret",
            "BITLOOT_KINGUIN_POLL_INTERVAL": "0.5",
            "BITLOOT_METRICS_PORT": "0",
            "BITLOOT_WORKER_METRICS_PORT": "0",
            "BITLOOT_LOG_FORMAT": "json",
            **self.extra_env,
        }

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.data_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "bitloot", *args],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def log_text(self, name: str) -> str:
        path = self.data_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def start_sim(self) -> None:
        self._spawn("sim", "sim", "--port", str(self.sim_port))
        await self._wait_http(f"{self.sim}/nowpayments/v1/status", "sim")

    async def start_api(self, name: str = "api", port: int | None = None) -> str:
        port = port or self.api_port
        self._spawn(name, "serve", "--port", str(port))
        await self._wait_http(f"http://127.0.0.1:{port}/readyz", name)
        return f"http://127.0.0.1:{port}"

    def start_worker(self, name: str = "worker", *args: str) -> subprocess.Popen[bytes]:
        return self._spawn(name, "worker", *args)

    async def _wait_http(self, url: str, name: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                proc = self.procs[name]
                if proc.poll() is not None:
                    raise AssertionError(f"{name} exited {proc.returncode}:\n{self.log_text(name)}")
                try:
                    async with http.get(url) as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"{name} not ready in {timeout}s:\n{self.log_text(name)}")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=30)

    def stop_all(self) -> None:
        for name in list(self.procs):
            proc = self.procs[name]
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for name in list(self.procs):
            try:
                self.procs[name].wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.procs[name].pid, signal.SIGKILL)
        self.procs.clear()

    # --- catalog, orders, payments -------------------------------------------------

    def seed_products(self) -> None:
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            for pid, name, price, max_cost, text_only in [
                (TEXT_PRODUCT_ID, "Text Game", "14.99", "12.00", True),
                (MIXED_PRODUCT_ID, "Mixed Game", "19.99", "15.00", False),
                (IMAGE_PRODUCT_ID, "Image Game", "29.99", "25.00", False),
            ]:
                conn.execute(
                    "INSERT INTO products (product_id, name, price, currency, max_cost, text_only)"
                    " VALUES (%s, %s, %s, 'eur', %s, %s) ON CONFLICT DO NOTHING",
                    (pid, name, Decimal(price), Decimal(max_cost), text_only),
                )

    async def create_order(
        self,
        http: aiohttp.ClientSession,
        items: list[dict[str, Any]],
        email: str = "ada@example.com",
    ) -> dict[str, Any]:
        async with http.post(f"{self.api}/orders", json={"email": email, "items": items}) as r:
            body = await r.json()
            assert r.status == 201, body
            return dict(body)

    def invoice_id(self, order_id: str) -> str:
        with psycopg.connect(self.db_url) as conn:
            row = conn.execute(
                "SELECT invoice_id FROM orders WHERE id = %s", (order_id,)
            ).fetchone()
        assert row is not None and row[0]
        return str(row[0])

    async def pay(self, http: aiohttp.ClientSession, order_id: str, **drive: Any) -> dict[str, Any]:
        body = {"wait": True, "interval_ms": 0, **drive}
        url = f"{self.sim}/nowpayments/sim/invoices/{self.invoice_id(order_id)}/pay"
        async with http.post(url, json=body) as r:
            result = await r.json()
            assert r.status == 201, result
            return dict(result)

    def order_row(self, order_id: str) -> tuple[str, str, str | None]:
        with psycopg.connect(self.db_url) as conn:
            row = conn.execute(
                "SELECT status, fulfillment_status, fulfillment_error FROM orders WHERE id = %s",
                (order_id,),
            ).fetchone()
        assert row is not None
        return row[0], row[1], row[2]

    async def wait_until(
        self,
        order_ids: list[str],
        *,
        done: tuple[str, ...] = ("fulfilled", "failed"),
        timeout: float = 60,
    ) -> dict[str, tuple[str, str, str | None]]:
        deadline = time.monotonic() + timeout
        while True:
            rows = {oid: self.order_row(oid) for oid in order_ids}
            if all(r[1] in done for r in rows.values()):
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(f"not done in {timeout}s: {rows}")
            await asyncio.sleep(0.2)

    async def sim_orders(self, http: aiohttp.ClientSession) -> list[dict[str, Any]]:
        async with http.get(f"{self.sim}/kinguin/sim/orders?include_keys=1") as r:
            return list((await r.json())["orders"])


def new_uuid() -> str:
    return str(uuid.uuid4())
