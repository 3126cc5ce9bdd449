"""A real PgBouncer (Debian's `pgbouncer`, installed by scripts/install-test-packages.sh) in
front of the test session's PostgreSQL, for tests that run BitLoot behind a pooler."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from bitloot.processes import free_port

SEARCH = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")


def pgbouncer_binary() -> str | None:
    """The pgbouncer executable, or None when it is not installed."""
    found = shutil.which("pgbouncer")
    return found or next((p for p in SEARCH if os.access(p, os.X_OK)), None)


@dataclass
class PgBouncer:
    """One PgBouncer process, listening on 127.0.0.1:`port`, every database name routed to
    the PostgreSQL at `pg_host` (a socket directory) and `pg_port`."""

    pg_host: str
    pg_port: int
    user: str
    pool_mode: str
    pool_size: int
    port: int = 0
    workdir: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    def url(self, dbname: str) -> str:
        return make_conninfo(host="127.0.0.1", port=self.port, user=self.user, dbname=dbname)

    @property
    def log(self) -> str:
        path = self.workdir / "pgbouncer.log" if self.workdir else None
        return path.read_text(errors="replace") if path and path.exists() else ""

    def start(self, binary: str, dbname: str) -> None:
        self.port = free_port()
        # Outside pytest's temp root (mode 0700): when the tests run as root, PgBouncer
        # runs as the user that owns PostgreSQL's socket directory (it refuses root).
        self.workdir = Path(tempfile.mkdtemp(prefix="bitloot-pgbouncer-"))
        self.workdir.chmod(0o755)
        ini = self.workdir / "pgbouncer.ini"
        users = self.workdir / "userlist.txt"
        users.write_text(f'"{self.user}" ""\n')
        ini.write_text(
            "[databases]\n"
            f"* = host={self.pg_host} port={self.pg_port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {users}\n"
            f"pool_mode = {self.pool_mode}\n"
            "max_client_conn = 500\n"
            f"default_pool_size = {self.pool_size}\n"
            "server_check_delay = 0\n"
        )
        args = [binary]
        if os.geteuid() == 0:
            args += ["-u", pwd.getpwuid(Path(self.pg_host).stat().st_uid).pw_name]
        with (self.workdir / "pgbouncer.log").open("wb") as out:
            self.proc = subprocess.Popen(
                [*args, str(ini)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._wait_ready(dbname)

    def _wait_ready(self, dbname: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"pgbouncer exited {self.proc.returncode}:\n{self.log}")
            try:
                with psycopg.connect(self.url(dbname), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"pgbouncer not ready in {timeout}s:\n{self.log}")
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
