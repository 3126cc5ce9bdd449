"""Schema migrations with yoyo: plain `.sql` files in `sql/migrations`, applied in name order."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict

MIGRATION_TABLE = "_yoyo_migration"


def migrations_dir() -> Path:
    """`sql/migrations` in the source tree (the project is installed editable or run from it)."""
    return Path(__file__).resolve().parents[2] / "sql" / "migrations"


@dataclass(frozen=True)
class MigrationState:
    """One migration file and whether it is applied."""

    id: str
    applied: bool


def _backend(conninfo: str) -> Any:
    from yoyo.backends.core.postgresql import PostgresqlPsycopgBackend
    from yoyo.connections import DatabaseURI

    params = {k: str(v) for k, v in conninfo_to_dict(conninfo).items() if v is not None}
    uri = DatabaseURI(
        scheme="postgresql+psycopg",
        username=params.pop("user", None),
        password=params.pop("password", None),
        hostname=None,
        port=None,
        database=params.pop("dbname", None),
        args=params,  # host (possibly a socket directory), port, sslmode... passed as they are
    )
    backend = PostgresqlPsycopgBackend(uri, MIGRATION_TABLE)
    backend.init_database()
    return backend


def _migrations() -> Any:
    from yoyo import read_migrations

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        migrations = read_migrations(str(migrations_dir()))
    if not migrations:
        # yoyo reads a missing folder as "no migrations": never call an empty schema current.
        raise FileNotFoundError(f"no migrations found in {migrations_dir()}")
    return migrations


def apply_migrations(conninfo: str) -> list[str]:
    """Apply every pending migration under yoyo's lock; return the ids applied (empty: no-op)."""
    backend = _backend(conninfo)
    migrations = _migrations()
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return [m.id for m in pending]


def migration_states(conninfo: str) -> list[MigrationState]:
    """Every migration file with whether it has been applied."""
    backend = _backend(conninfo)
    migrations = _migrations()
    applied = {m.id for m in backend.to_rollback(migrations)}
    return [MigrationState(m.id, m.id in applied) for m in migrations]


def pending_migrations(conninfo: str) -> list[str]:
    """Ids of the migrations not yet applied (used by readiness checks)."""
    return [s.id for s in migration_states(conninfo) if not s.applied]
