"""A whole BitLoot on loopback for end-to-end tests: simulators, API servers and workers
as real subprocesses (so a test can SIGKILL them), sharing the test's database. The
processes are managed by the product's own `ChildProcesses` (what `demo`, `up` and `bench`
use): each in its own process group, logging to `<data_dir>/<name>.log`."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bitloot.processes import ChildProcesses, free_port
from bitloot.sim.kinguin_catalog import IMAGE_PRODUCT_ID, MIXED_PRODUCT_ID, TEXT_PRODUCT_ID
from bitloot.vault.crypto import generate_master_key

JWT_SECRET = "e2e-jwt-secret-that-is-long-enough-for-hs256!!"


@dataclass
class Stack(ChildProcesses):
    """The processes of one test and how to reach them."""

    error = AssertionError

    db_url: str
    data_dir: Path
    sim_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    master_keys: str = field(default_factory=lambda: generate_master_key("k1"))
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # What the next child gets; rebuilt at each start (see `spawn`).
    env: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def sim(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    def child_env(self) -> dict[str, str]:
        """The children's environment: this stack's settings, with `extra_env` on top."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("BITLOOT_")}
        base.pop("DATABASE_URL", None)
        return {
            **base,
            "DATABASE_URL": self.db_url,
            "BITLOOT_DATA_DIR": str(self.data_dir),
            "BITLOOT_MAIL_DIR": str(self.data_dir / "mail"),
            "BITLOOT_PUBLIC_URL": self.api,
            "BITLOOT_MASTER_KEYS": self.master_keys,
            "BITLOOT_JWT_SECRET": JWT_SECRET,
            "BITLOOT_NOWPAYMENTS_API_URL": f"{self.sim}/nowpayments/v1",
            "BITLOOT_NOWPAYMENTS_API_KEY": "e2e-np-key",
            "BITLOOT_NOWPAYMENTS_IPN_SECRET": "e2e-ipn-secret-0123456789",
            "BITLOOT_KINGUIN_API_URL": f"{self.sim}/kinguin",
            "BITLOOT_KINGUIN_API_KEY": "e2e-kinguin-key",
            "BITLOOT_KINGUIN_WEBHOOK_SECRET": "e2e-kinguin-webhook-secret",
            "BITLOOT_KINGUIN_POLL_INTERVAL": "0.5",
            "BITLOOT_METRICS_PORT": "0",
            "BITLOOT_WORKER_METRICS_PORT": "0",
            "BITLOOT_LOG_FORMAT": "json",
            **self.extra_env,
        }

    # --- processes ------------------------------------------------------------------

    def log_path(self, name: str) -> Path:
        return self.data_dir / f"{name}.log"

    def spawn(
        self, name: str, *args: str, module: str = "bitloot", prefix: tuple[str, ...] = ()
    ) -> subprocess.Popen[bytes]:
        # A test may change `extra_env` between starts (e.g. one crashing worker).
        self.env = self.child_env()
        return super().spawn(name, *args, module=module, prefix=prefix)

    def log_text(self, name: str) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""

    async def start_sim(self) -> None:
        self.spawn("sim", "sim", "--port", str(self.sim_port))
        await self._wait_http("sim", f"{self.sim}/nowpayments/v1/status")

    async def start_api(self, name: str = "api", port: int | None = None) -> str:
        port = port or self.api_port
        self.spawn(name, "serve", "--port", str(port))
        await self._wait_http(name, f"http://127.0.0.1:{port}/readyz")
        return f"http://127.0.0.1:{port}"

    def start_worker(self, name: str = "worker", *args: str) -> subprocess.Popen[bytes]:
        return self.spawn(name, "worker", *args)

    async def _wait_http(self, name: str, url: str, timeout: float = 60) -> None:
        """`wait_http` off the event loop (servers may be started concurrently), with the
        child's log in the failure."""
        try:
            await asyncio.to_thread(self.wait_http, name, url, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log_text(name)[-5000:]}") from None

    def kill(self, name: str, sig: int = signal.SIGKILL, timeout: float = 30) -> int:
        """Signal child `name`'s process group (SIGKILL unless told), wait for it to exit and
        forget it; its exit status."""
        return self.kill_child(name, sig, timeout)

    def stop_all(self) -> None:
        """SIGTERM every child, SIGKILL whatever lingers; their logs are complete after."""
        self.stop_children(timeout=30)

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

    async def sim_webhooks(self, http: aiohttp.ClientSession) -> list[dict[str, Any]]:
        """Every Kinguin webhook delivery attempt (and drop) the simulator made."""
        async with http.get(f"{self.sim}/kinguin/sim/webhooks") as r:
            return list((await r.json())["deliveries"])

    # --- "nothing more happens" --------------------------------------------------------

    def unfinished_work(self, order_ids: list[str]) -> dict[str, int]:
        """What BitLoot still has to do for these orders: fulfillment and email jobs queued
        (retries included) or running, emails neither sent nor given up, webhooks naming
        them stored but not applied."""
        with psycopg.connect(self.db_url) as conn:
            row = conn.execute(
                "SELECT"
                " (SELECT count(*) FROM procrastinate_jobs j WHERE j.status IN ('todo', 'doing')"
                "   AND ((j.task_name = 'fulfill_order' AND j.args->>'order_id' = ANY(%(ids)s))"
                "     OR (j.task_name = 'send_delivery_email'"
                "       AND (j.args->>'outbox_id')::bigint IN"
                "         (SELECT id FROM email_outbox WHERE order_id::text = ANY(%(ids)s))))),"
                " (SELECT count(*) FROM email_outbox"
                "   WHERE order_id::text = ANY(%(ids)s) AND status = 'pending'),"
                " (SELECT count(*) FROM webhook_events"
                "   WHERE order_id::text = ANY(%(ids)s) AND processed_at IS NULL)",
                {"ids": order_ids},
            ).fetchone()
        assert row is not None
        return dict(zip(("jobs", "pending_emails", "unapplied_webhooks"), row, strict=True))

    async def wait_settled(self, order_ids: list[str], timeout: float = 120) -> None:
        """Wait until BitLoot has finished all work on these orders (`unfinished_work` is
        all zeros): only then does "and nothing more happened" check anything. The jobs of
        a SIGKILLed worker count until the stalled-job sweeper has run them again."""
        deadline = time.monotonic() + timeout
        while any((left := self.unfinished_work(order_ids)).values()):
            if time.monotonic() > deadline:
                raise AssertionError(f"work left after {timeout}s: {left}")
            await asyncio.sleep(0.2)


def new_uuid() -> str:
    return str(uuid.uuid4())


async def issued_serials(
    stack: Stack, http: aiohttp.ClientSession, order_id: str
) -> dict[str, bytes]:
    """What the Kinguin simulator issued for our order, key id -> plaintext bytes."""
    out: dict[str, bytes] = {}
    for order in await stack.sim_orders(http):
        if order.get("orderExternalId") != order_id:
            continue
        for product in order["products"]:
            for key in product.get("keys", []):
                if "serial" not in key:
                    continue
                serial = key["serial"]
                out[key["id"]] = (
                    serial.encode() if key.get("type", "text/plain") == "text/plain"
                    else base64.b64decode(serial)
                )  # fmt: skip
    return out


async def reveal(
    http: aiohttp.ClientSession, api: str, order_id: str, token: str
) -> tuple[int, dict[str, bytes]]:
    """Reveal as the key page does: download-link with `token`, each signed URL fetched,
    each blob decrypted with its data key. (download-link's status, key id -> plaintext);
    no keys unless it answered 200."""
    headers = {"Authorization": f"Bearer {token}"}
    async with http.get(f"{api}/fulfillment/{order_id}/download-link", headers=headers) as r:
        body = await r.json(content_type=None)
        if r.status != 200:
            return r.status, {}
    out: dict[str, bytes] = {}
    for key in body["keys"]:
        async with http.get(key["signedUrl"]) as obj:
            assert obj.status == 200, (obj.status, await obj.text())
            blob = await obj.read()
        assert blob[0] == 1, "unknown ciphertext version"
        additional = f"{order_id}:{key['keyId']}".encode()
        aead = AESGCM(base64.b64decode(key["dataKey"]))
        out[key["keyId"]] = aead.decrypt(blob[1:13], blob[13:], additional)
    return 200, out
