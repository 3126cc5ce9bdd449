"""The embedded PostgreSQL: started once, shared by several processes, kept across restarts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bitloot.db.embedded import is_running, stop_embedded_server

SCRIPT = """
import sys
from pathlib import Path
import psycopg
from bitloot.db.embedded import ensure_embedded_server
url = ensure_embedded_server(Path(sys.argv[1]))
with psycopg.connect(url, autocommit=True) as conn:
    conn.execute("CREATE TABLE IF NOT EXISTS marks (who text)")
    conn.execute("INSERT INTO marks VALUES (%s)", (sys.argv[2],))
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()
    server = conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
    rows = [r[0] for r in conn.execute("SELECT who FROM marks ORDER BY who")]
print(server.isoformat(), ",".join(rows))
"""


def _run(data_dir: Path, mark: str) -> tuple[str, str]:
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", SCRIPT, str(data_dir), mark],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout.split()
    return out[0], out[1]


def test_started_once_shared_by_processes_and_survives_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    try:
        started_1, marks_1 = _run(data_dir, "a")
        assert marks_1 == "a"
        assert is_running(data_dir)  # left running for the next process

        started_2, marks_2 = _run(data_dir, "b")
        assert started_2 == started_1  # the second process reused the same server
        assert marks_2 == "a,b"

        assert stop_embedded_server(data_dir)
        assert not is_running(data_dir)
        started_3, marks_3 = _run(data_dir, "c")
        assert started_3 != started_1  # a new server process ...
        assert marks_3 == "a,b,c"  # ... on the same data
    finally:
        stop_embedded_server(data_dir)
