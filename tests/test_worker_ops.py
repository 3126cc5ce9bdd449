"""`bitloot worker` as operators run it: the health check (`--check`) against a real
database, the per-instance metrics port, and the refusal to start without a mail transport."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from bitloot.config import ConfigError, environ_without_bitloot, load_settings


def run_worker(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bitloot", "worker", *args],
        cwd=tmp_path,  # no stray .env file
        env={**environ_without_bitloot(), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_passes_only_with_a_fresh_heartbeat(db_url: str, tmp_path: Path) -> None:
    assert run_worker(tmp_path, "--check", DATABASE_URL=db_url).returncode == 1

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() - interval '1 hour')"
        )
    stale = run_worker(tmp_path, "--check", DATABASE_URL=db_url)
    assert stale.returncode == 1
    assert stale.stderr.strip() == "bitloot: no worker heartbeat in the last 30 s"
    assert run_worker(tmp_path, "--check", "--max-age", "7200", DATABASE_URL=db_url).returncode == 0

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now())")
    fresh = run_worker(tmp_path, "--check", DATABASE_URL=db_url)
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.startswith("ok: 1 worker(s)")


def test_check_reports_an_unreachable_database_in_one_line(tmp_path: Path) -> None:
    result = run_worker(tmp_path, "--check", DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    assert result.returncode == 2
    assert result.stderr.startswith("bitloot: cannot reach the database")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("base", "instance", "port"), [(9200, 1, 9201), (9200, 10, 9210),
                                                       (9200, 8, 9208), (9109, 0, 9109),
                                                       (0, 5, 0)])  # fmt: skip
def test_worker_metrics_port_is_base_plus_instance(base: int, instance: int, port: int) -> None:
    settings = load_settings(worker_metrics_port=base, worker_instance=instance)
    assert settings.effective_worker_metrics_port == port


@pytest.mark.parametrize("instance", ["x", "-1", "1001", "1.5"])
def test_a_bad_instance_is_one_line_naming_the_variable(instance: str) -> None:
    with pytest.raises(ConfigError, match=r"^invalid configuration: BITLOOT_WORKER_INSTANCE: "):
        load_settings(worker_instance=instance)


def test_an_instance_past_the_last_port_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"BITLOOT_WORKER_INSTANCE: .*65535"):
        load_settings(worker_metrics_port=65000, worker_instance=600)


def test_worker_refuses_to_start_without_a_mail_transport(db_url: str, tmp_path: Path) -> None:
    result = run_worker(
        tmp_path,
        DATABASE_URL=db_url,
        BITLOOT_KINGUIN_API_KEY="k",
        BITLOOT_DATA_DIR=str(tmp_path / "data"),
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "bitloot: BITLOOT_SMTP_URL (a mail server) or BITLOOT_MAIL_DIR (a folder of .eml files)"
        " is required for `bitloot worker`: neither is set"
    )
