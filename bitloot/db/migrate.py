"""Schema migrations with yoyo: plain `.sql` files in `sql/migrations`, applied in name order.

The repository's `sql/` directory is the package `bitloot._sql` (pyproject.toml maps it with
`[tool.setuptools.package-dir]`), so a wheel carries the migrations and an editable install
reads them from the source tree; either way they are found through importlib.resources.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict

MIGRATION_TABLE = "_yoyo_migration"
MIGRATIONS_PACKAGE = "bitloot._sql"


def migrations_dir() -> Path:
    """The installed `bitloot._sql/migrations` directory (`sql/migrations` in the repository).

    yoyo reads a directory, so the package must be installed as files (a wheel or an editable
    install is; a zip import is not): anything else raises instead of reading no migrations.
    """
    try:
        directory = resources.files(MIGRATIONS_PACKAGE) / "migrations"
    except ModuleNotFoundError as exc:
        raise FileNotFoundError(
            f"package {MIGRATIONS_PACKAGE} is not installed: this bitloot has no migrations"
        ) from exc
    if not isinstance(directory, Path) or not directory.is_dir():
        raise FileNotFoundError(f"no migrations directory at {directory}")
    return directory


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

    directory = migrations_dir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        migrations = read_migrations(str(directory))
    if not migrations:
        # yoyo reads a missing folder as "no migrations": never call an empty schema current.
        raise FileNotFoundError(f"no migrations found in {directory}")
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
