"""`bitloot bench` end to end with tiny sizes: each subcommand runs as a subprocess with
--json on a temporary data directory, exits 0, and ends stdout with the JSON result."""

from __future__ import annotations

import json
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


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not under pytest's tmp root (mode 0700 would lock out the embedded_postgres user).
    path = Path(tempfile.mkdtemp(prefix="bitloot-bench-test-"))
    yield path / "bench"
    shutil.rmtree(path, ignore_errors=True)


def run_bench(*args: str, data_dir: Path, timeout: float = 90) -> dict[str, Any]:
    env_free = {"BITLOOT_DATA_DIR": "/nonexistent-on-purpose"}  # never used by the bench
    proc = subprocess.run(
        [sys.executable, "-m", "bitloot", "bench", *args, "--json", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**_environ(), **env_free},
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-3000:]}"
    last = proc.stdout.strip().splitlines()[-1]
    result: dict[str, Any] = json.loads(last)
    assert result.keys() >= COMMON_FIELDS, result.keys()
    assert result["versions"].keys() >= VERSION_FIELDS
    assert result["cpu_count"] >= 1
    assert result["problems"] == []
    assert isinstance(result["ratio"], float) and result["ratio"] > 0
    # The table came first, on stdout; the progress bar went to stderr.
    assert proc.stdout.startswith("bitloot bench ")
    return result


def _environ() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}


def test_bench_ipn_smoke(data_dir: Path) -> None:
    result = run_bench(
        "ipn", "--requests", "50", "--concurrency", "8", "--warmup", "10",
        "--processes", "1", data_dir=data_dir,
    )  # fmt: skip
    assert result["benchmark"] == "ipn"
    assert result["target"] == 0.5
    [row] = result["results"]
    assert row["processes"] == 1
    assert row["bitloot"]["ok"] == 50 and row["baseline"]["ok"] == 50
    assert row["bitloot"]["verified"] == {"paid": 50, "with_job": 50}
    for kind in ("bitloot", "baseline"):
        assert {"rps", "p50_ms", "p99_ms", "max_ms"} <= row[kind].keys()


def test_bench_ipn_pg_stats_counts_one_round_trip_of_work_per_ipn(data_dir: Path) -> None:
    result = run_bench(
        "ipn", "--requests", "50", "--concurrency", "8", "--warmup", "10",
        "--processes", "1", "--pg-stats", data_dir=data_dir,
    )  # fmt: skip
    pg = result["results"][0]["bitloot"]["pg_stats"]
    # BEGIN, SELECT ... FROM bitloot_apply_ipn(...), COMMIT: the whole IPN is one statement
    # (plus the bench's own few readings of the WAL, spread over the requests).
    assert 3 <= pg["round_trips_per_unit"] < 3.5
    assert pg["wal_bytes_per_unit"] > 0
    assert any("bitloot_apply_ipn" in s["query"] for s in pg["top_statements"])


def test_bench_pipeline_smoke(data_dir: Path) -> None:
    result = run_bench(
        "pipeline", "--orders", "5", "--workers", "1", "--concurrency", "4",
        "--noop-jobs", "100", "--warmup", "2", "--light-rate", "10", "--light-seconds", "0.5",
        "--half-seconds", "0.5",
        data_dir=data_dir,
    )  # fmt: skip
    assert result["benchmark"] == "pipeline"
    assert result["target"] == 0.33
    assert result["burst"]["fulfilled"] == 5
    assert result["light"]["fulfilled"] == 5
    assert result["orders_per_s"] > 0 and result["noop_jobs_per_s"] > 0
    assert {"p50_ms", "p99_ms"} <= result["burst"]["time_to_key"].keys()
    assert result["light_p50_ms"] is not None
    assert result["half_peak"]["fulfilled"] == result["half_peak"]["orders"] >= 1
    assert result["half_peak"]["rate"] == round(result["orders_per_s"] / 2, 1)
    assert result["half_peak_target_p99_ms"] == 250.0
    assert {"server", "worker"} <= result["peak_rss_mib"].keys()
