"""Bad configuration stops a command with one line naming the variable, exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bitloot.config import ConfigError, load_settings


def _bitloot(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BITLOOT_")}
    base.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "bitloot", *args],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BITLOOT_PAID_ON", "whenever"),
        ("BITLOOT_SIGNED_URL_TTL", "soon"),
        ("BITLOOT_NOWPAYMENTS_API_URL", "ftp://hunter2-not-a-url"),
        ("BITLOOT_LOG_FORMAT", "xml"),
        ("BITLOOT_DATABASE_POOLER", "pgbouncer"),
        ("BITLOOT_API_POOL_SIZE", "plenty"),
    ],
)
def test_bad_setting_is_one_line_exit_2(tmp_path: Path, variable: str, value: str) -> None:
    result = _bitloot("migrate", env={variable: value}, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert value not in result.stderr  # never echo what was configured
    assert "Traceback" not in result.stderr


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("BITLOOT_PAID_ON=sometime\n")
    result = _bitloot("migrate", env={}, cwd=tmp_path)
    assert result.returncode == 2
    assert "BITLOOT_PAID_ON" in result.stderr


def test_required_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BITLOOT_MASTER_KEYS", raising=False)
    settings = load_settings()
    with pytest.raises(ConfigError, match="BITLOOT_MASTER_KEYS"):
        settings.require("master_keys")


def test_database_url_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://x@/db")
    settings = load_settings()
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value() == "postgresql://x@/db"
    assert "postgresql://x@" not in repr(settings)


def test_bad_product_is_one_line(tmp_path: Path, db_url: str) -> None:
    result = _bitloot(
        "products", "add", "--product-id", "p1", "--name", "Game", "--price", "-3",
        "--currency", "eur", "--max-cost", "2", env={"DATABASE_URL": db_url}, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--price" in result.stderr


def test_products_add_is_idempotent_and_updates(tmp_path: Path, db_url: str) -> None:
    env = {"DATABASE_URL": db_url}
    args = ["products", "add", "--product-id", "5c9b68662539a4e8f17ae2fe", "--name", "Game"]
    first = _bitloot(*args, "--price", "19.99", "--currency", "EUR", "--max-cost", "15",
                     env=env, cwd=tmp_path)  # fmt: skip
    assert first.returncode == 0, first.stderr
    second = _bitloot(*args, "--price", "17.50", "--currency", "eur", "--max-cost", "14",
                      env=env, cwd=tmp_path)  # fmt: skip
    assert second.returncode == 0, second.stderr
    listing = _bitloot("products", "list", env=env, cwd=tmp_path)
    lines = listing.stdout.strip().splitlines()
    assert len(lines) == 1
    assert "17.50 eur" in lines[0] and "active" in lines[0]
