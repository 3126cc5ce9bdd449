"""Schema migrations with yoyo: plain `.sql` files in `sql/migrations`, applied in name order.

The repository's `sql/` directory is the package `bitloot._sql` (pyproject.toml maps it with
`[tool.setuptools.package-dir]`), so a wheel carries the migrations and an editable install
reads them from the source tree; either way they are found through importlib.resources.

After the migrations, `migrate` re-applies the grants of the two group roles
(`bitloot_grant_roles()`, sql/migrations/0009_roles.sql); when the roles do not exist and the
migrating login may not create them, `roles_sql()` (bitloot/db/roles.sql) is what an
administrator runs once. Reading the migration state (`migration_states`, the readiness
check of `serve` and `worker`) needs only SELECT on the migration table, so the application's
login, which may not create tables, can do it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
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


@dataclass(frozen=True)
class MigrateResult:
    """What `migrate` did: the migrations applied, and whether the roles got their grants."""

    applied: list[str]
    roles_granted: bool  # False: bitloot_app/bitloot_auditor are missing (see roles_sql)


def migrate(conninfo: str) -> MigrateResult:
    """Apply every pending migration, then re-apply the roles' grants, under yoyo's lock
    (concurrent GRANTs on one table can fail, so two `bitloot migrate` never overlap)."""
    migrations = _migrations()
    backend = _backend(conninfo)
    try:
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
            with backend.transaction():
                # Resolved at parse time, so asked for only once it exists (0009 onwards).
                found = backend.execute("SELECT to_regprocedure('bitloot_grant_roles()')")
                granted = found.fetchone()[0] is not None and bool(
                    backend.execute("SELECT bitloot_grant_roles()").fetchone()[0]
                )
    finally:
        backend.connection.close()
    return MigrateResult([m.id for m in pending], granted)


def apply_migrations(conninfo: str) -> list[str]:
    """Apply every pending migration (and the grants); return the ids applied (empty: no-op)."""
    return migrate(conninfo).applied


def roles_sql() -> str:
    """The SQL an administrator runs once when `bitloot migrate` may not create the roles."""
    return (resources.files("bitloot.db") / "roles.sql").read_text(encoding="utf-8")


def migration_states(conninfo: str) -> list[MigrationState]:
    """Every migration file with whether it has been applied.

    Reads yoyo's table directly (yoyo itself would try to create its tables first, which
    the application's login may not), so it needs nothing but SELECT on it.
    """
    migrations = _migrations()
    applied: set[str] = set()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (MIGRATION_TABLE,)).fetchone()
        if row is not None and row[0]:
            query = sql.SQL("SELECT migration_id FROM {}").format(sql.Identifier(MIGRATION_TABLE))
            applied = {migration_id for (migration_id,) in conn.execute(query)}
    return [MigrationState(m.id, m.id in applied) for m in migrations]


def pending_migrations(conninfo: str) -> list[str]:
    """Ids of the migrations not yet applied (used by readiness checks)."""
    return [s.id for s in migration_states(conninfo) if not s.applied]
