"""`bitloot demo` and `bitloot up` as a newcomer runs them: nothing configured, a fresh
data directory, the embedded PostgreSQL, real child processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest

from bitloot.db.embedded import embedded_pgdata, is_running, stop_embedded_server
from bitloot.processes import free_port
from bitloot.vault.crypto import MasterKeyRing, open_blob, unwrap_data_key


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BITLOOT_")}
    env.pop("DATABASE_URL", None)
    return env


def _stored_keys(data_dir: Path) -> dict[str, bytes]:
    """Decrypt every stored key of the demo's database with the demo's own master key."""
    from bitloot.db.embedded import ensure_embedded_server

    secrets_ = json.loads((data_dir / "demo-secrets.json").read_text())
    ring = MasterKeyRing.parse(secrets_["BITLOOT_MASTER_KEYS"])
    url = ensure_embedded_server(data_dir)
    try:
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT order_id::text, key_id, object_key, wrapped_data_key, master_key_id"
                " FROM key_delivery_logs"
            ).fetchall()
    finally:
        stop_embedded_server(data_dir)
    out = {}
    for order_id, key_id, object_key, wrapped, mk in rows:
        dk = unwrap_data_key(wrapped, master_key_id=mk, order_id=order_id, key_id=key_id, ring=ring)
        blob = (data_dir / "objects" / object_key).read_bytes()
        out[key_id] = open_blob(blob, dk, order_id=order_id, key_id=key_id)
    return out


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A working directory outside pytest's temp root, which pytest keeps at mode 0700 and
    the `embedded_postgres` user (the server's, when tests run as root) could not enter."""
    path = Path(tempfile.mkdtemp(prefix="bitloot-demo-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_demo_runs_twice_and_prints_the_key_that_was_stored(workdir: Path) -> None:
    tmp_path = workdir
    data_dir = tmp_path / ".bitloot"
    printed: dict[str, str] = {}
    try:
        for run in (1, 2):
            result = subprocess.run(
                [sys.executable, "-m", "bitloot", "demo"],
                cwd=tmp_path,
                env=_clean_env(),
                capture_output=True,
                text=True,
                timeout=240,
            )
            assert result.returncode == 0, (run, result.stdout, result.stderr)
            assert "demo finished" in result.stdout
            for step in ("invoice", "payment finished", "kinguin order", "key encrypted+stored",
                         "order fulfilled", "email", "download link"):  # fmt: skip
                assert step in result.stdout, (step, result.stdout)
            found = dict(re.findall(r"revealed key (\w+): (\S+)", result.stdout))
            assert len(found) == 1
            printed.update(found)
            assert not is_running(data_dir)  # the demo stopped the PostgreSQL it started
        assert (data_dir / "demo-secrets.json").stat().st_mode & 0o777 == 0o600
        stored = _stored_keys(data_dir)
        assert len(stored) == 2  # one order per run, one key each
        assert {k: v.decode() for k, v in stored.items()} == printed
    finally:
        stop_embedded_server(data_dir)


def test_ctrl_c_during_up_leaves_no_process_behind(workdir: Path) -> None:
    tmp_path = workdir
    data_dir = tmp_path / ".bitloot"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bitloot", "up", "--port", str(free_port()),
         "--sim-port", str(free_port())],
        cwd=tmp_path,
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "Press Ctrl-C" in line or proc.poll() is not None:
                break
        output = "".join(lines)
        assert "admin token" in output and "key page:" in output, output
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 3  # simulators, API, worker (and their own children)
        pgdata = str(embedded_pgdata(data_dir))
        postgres = [
            p
            for p in psutil.process_iter(["cmdline"])
            if pgdata in " ".join(p.info["cmdline"] or [])
        ]
        assert postgres, "the embedded PostgreSQL should be running"

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        _gone, alive = psutil.wait_procs(children + postgres, timeout=30)
        assert not alive, [p.pid for p in alive]
    finally:
        if proc.poll() is None:
            proc.kill()
        stop_embedded_server(data_dir)
