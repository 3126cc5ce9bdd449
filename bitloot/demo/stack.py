"""A local stack: embedded PostgreSQL, the simulators, one API server and one worker.

Child processes run in their own process groups with their output in
`$BITLOOT_DATA_DIR/logs/`, and are stopped (SIGTERM, then SIGKILL) whatever way the parent
exits. Generated secrets are kept in the data directory (mode 0600), so a second run reuses
the same master key and can still read the keys the first run stored.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bitloot.config import Settings
from bitloot.db.connect import database_url
from bitloot.db.embedded import is_running, stop_embedded_server
from bitloot.db.migrate import apply_migrations
from bitloot.files import write_atomically
from bitloot.processes import ChildProcesses, free_port
from bitloot.sim.kinguin_catalog import IMAGE_PRODUCT_ID, MIXED_PRODUCT_ID, TEXT_PRODUCT_ID
from bitloot.vault.crypto import generate_master_key

SECRETS_FILE = "demo-secrets.json"
DEMO_PRODUCTS = [
    # (Kinguin productId, name, retail price EUR, most we pay EUR, text keys only)
    (TEXT_PRODUCT_ID, "Starfall Odyssey (Steam key)", "14.99", "12.00", True),
    (MIXED_PRODUCT_ID, "Neon Drift (any key type)", "19.99", "15.00", False),
    (IMAGE_PRODUCT_ID, "Gift card (image key)", "29.99", "25.00", False),
]


class StackError(Exception):
    """A step of the local stack failed; the message says which and where its log is."""


def load_or_create_secrets(data_dir: Path) -> dict[str, str]:
    """The demo's generated secrets, created once with mode 0600 and reused afterwards."""
    path = data_dir / SECRETS_FILE
    if path.exists():
        return dict(json.loads(path.read_text()))
    values = {
        "BITLOOT_MASTER_KEYS": generate_master_key("demo1"),
        "BITLOOT_JWT_SECRET": secrets.token_urlsafe(48),
        "BITLOOT_NOWPAYMENTS_API_KEY": "demo-np-" + secrets.token_hex(8),
        "BITLOOT_NOWPAYMENTS_IPN_SECRET": secrets.token_urlsafe(32),
        "BITLOOT_KINGUIN_API_KEY": "demo-kg-" + secrets.token_hex(8),
        "BITLOOT_KINGUIN_WEBHOOK_SECRET": secrets.token_urlsafe(32),
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    # Whole or not at all: a run killed mid-write must not leave a file the next can't read.
    write_atomically(path, json.dumps(values, indent=2).encode(), mode=0o600)
    return values


@dataclass
class LocalStack(ChildProcesses):
    """The processes of a local stack and how to reach them."""

    error = StackError

    settings: Settings
    api_port: int = 8080
    sim_port: int = 8090
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    db_url: str = ""
    started_postgres: bool = False
    env: dict[str, str] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def sim(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    def log_path(self, name: str) -> Path:
        return self.data_dir / "logs" / f"{name}.log"

    def prepare(self) -> None:
        """Start (or reuse) PostgreSQL, migrate, seed the catalog, build the children's env."""
        self.started_postgres = self.settings.database_url is None and not is_running(self.data_dir)
        self.db_url = database_url(self.settings)
        apply_migrations(self.db_url)
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            for pid, name, price, max_cost, text_only in DEMO_PRODUCTS:
                conn.execute(
                    "INSERT INTO products (product_id, name, price, currency, max_cost, text_only)"
                    " VALUES (%s, %s, %s, 'eur', %s, %s) ON CONFLICT (product_id) DO NOTHING",
                    (pid, name, price, max_cost, text_only),
                )
        generated = load_or_create_secrets(self.data_dir)
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("BITLOOT_")}
        inherited.pop("DATABASE_URL", None)
        self.env = {
            **inherited,
            **generated,
            "DATABASE_URL": self.db_url,
            "BITLOOT_DATA_DIR": str(self.data_dir),
            # Explicit, as `bitloot worker` requires: the demo's emails are files to open.
            "BITLOOT_MAIL_DIR": str(self.data_dir / "mail"),
            "BITLOOT_PUBLIC_URL": self.api,
            "BITLOOT_NOWPAYMENTS_API_URL": f"{self.sim}/nowpayments/v1",
            "BITLOOT_KINGUIN_API_URL": f"{self.sim}/kinguin",
            "BITLOOT_KINGUIN_POLL_INTERVAL": "0.5",
            "BITLOOT_METRICS_PORT": str(free_port()),
            "BITLOOT_WORKER_METRICS_PORT": str(free_port()),
            "BITLOOT_LOG_FORMAT": "json",
        }
        # Keep what the operator configured explicitly (e.g. BITLOOT_SMTP_URL).
        for key in ("BITLOOT_SMTP_URL", "BITLOOT_MAIL_DIR", "BITLOOT_STORAGE_URL"):
            if key in os.environ:
                self.env[key] = os.environ[key]

    def start_all(self) -> None:
        """Simulators, API and worker; waits until the HTTP ones answer."""
        self.spawn("sim", "sim", "--port", str(self.sim_port))
        self.wait_http("sim", f"{self.sim}/nowpayments/v1/status")
        self.spawn("api", "serve", "--port", str(self.api_port))
        self.wait_http("api", f"{self.api}/readyz")
        self.spawn("worker", "worker", "--concurrency", "4")

    def stop(self) -> None:
        """Stop every child (SIGTERM, then SIGKILL after 10 s) and PostgreSQL if we started it."""
        self.stop_children(timeout=10)
        if self.started_postgres:
            stop_embedded_server(self.data_dir)
            self.started_postgres = False
