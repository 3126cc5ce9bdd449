"""The built wheel is a whole BitLoot: it carries the migrations (the repository's `sql/` as
the package `bitloot._sql`), and an installation of it alone, in a fresh virtual environment
outside the source tree, migrates an empty database and serves `/healthz` and `/readyz`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pytest_postgresql.janitor import DatabaseJanitor

from bitloot.config import environ_without_bitloot
from bitloot.processes import free_port
from bitloot.vault.crypto import generate_master_key

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
SOURCE_MIGRATIONS = sorted(p.name for p in (ROOT / "sql" / "migrations").glob("*.sql"))
# What the build reads: the same as deploy/Dockerfile copies into its build context.
BUILD_INPUTS = ("pyproject.toml", "README.md", "bitloot", "sql")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def _source_packages() -> set[str]:
    """Every directory under bitloot/ that holds a file: each is a package the wheel needs."""
    found = set()
    for directory in [ROOT / "bitloot", *(ROOT / "bitloot").rglob("*")]:
        if not directory.is_dir() or "__pycache__" in directory.parts:
            continue
        if any(child.is_file() for child in directory.iterdir()):
            found.add(".".join(directory.relative_to(ROOT).parts))
    return found


def test_pyproject_lists_every_package() -> None:
    """`[tool.setuptools] packages` is a list (`bitloot._sql` cannot be found by discovery):
    a package added under bitloot/ and not listed there would be missing from the wheel."""
    listed = set(PYPROJECT["packages"])
    missing = sorted(_source_packages() - listed)
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {missing}"
    mapped = PYPROJECT.get("package-dir", {})
    for package in listed:
        prefix = next((p for p in mapped if package == p or package.startswith(p + ".")), None)
        if prefix is None:
            directory = ROOT.joinpath(*package.split("."))
        else:
            directory = ROOT / mapped[prefix] / Path(*package[len(prefix) :].split(".")[1:])
        assert directory.is_dir(), f"{package} is listed in pyproject.toml, {directory} is gone"


def _local_backend_suffices() -> bool:
    """Whether this environment's setuptools can build the wheel without build isolation
    (>= 69 as pyproject.toml requires, and bdist_wheel: built in from 70.1, else `wheel`)."""
    try:
        version = tuple(int(x) for x in metadata.version("setuptools").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    if version >= (70, 1):
        return True
    try:
        metadata.version("wheel")
    except metadata.PackageNotFoundError:
        return False
    return version >= (69, 0)


@pytest.fixture(scope="module")
def wheel() -> Iterator[Path]:
    """The wheel built from a copy of the build inputs (the build writes `build/` and
    `*.egg-info` beside its sources: not in the shared working tree)."""
    with tempfile.TemporaryDirectory(prefix="bitloot-wheel-") as tmp:
        source = Path(tmp) / "src"
        source.mkdir()
        for name in BUILD_INPUTS:
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, source / name, ignore=IGNORE)
            else:
                shutil.copy2(ROOT / name, source / name)
        dist = Path(tmp) / "dist"
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist)]
        if _local_backend_suffices():
            command.append("--no-build-isolation")  # no index needed for the build backend
        result = subprocess.run(
            [*command, str(source)], capture_output=True, text=True, timeout=180, check=False
        )
        if result.returncode != 0:
            output = result.stdout + result.stderr
            if "No matching distribution found" in output or "Could not find a version" in output:
                pytest.skip(f"no build backend here nor from the package index:\n{output}")
            raise AssertionError(f"building the wheel failed:\n{output}")
        (built,) = dist.glob("bitloot-*.whl")
        yield built


def test_wheel_carries_every_module_and_migration(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = [n for n in names if n.startswith("bitloot/_sql/migrations/")]
    migrations = sorted(Path(n).name for n in shipped if n.endswith(".sql"))
    assert migrations == SOURCE_MIGRATIONS
    assert "bitloot/_sql/__init__.py" in names
    assert "bitloot/_sql/schema.snapshot.sql" not in names  # a review aid, not run-time data
    modules = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "bitloot").rglob("*")
        if p.suffix in (".py", ".sql", ".html", ".css", ".js") and "__pycache__" not in p.parts
    }
    assert not modules - names, f"missing from the wheel: {sorted(modules - names)}"


@pytest.fixture
def installed(wheel: Path, tmp_path: Path) -> Path:
    """A fresh virtual environment holding the wheel; its dependencies are this environment's
    (a `.pth` line, added after the install so pip never sees this environment's bitloot).
    Returns its interpreter."""
    env_dir = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=60
    )
    python = env_dir / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        timeout=120,
    )
    site = subprocess.run(
        [str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    ours = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (Path(site) / "_bitloot_test_dependencies.pth").write_text("\n".join(ours) + "\n")
    return python


@pytest.fixture
def empty_db(pg_server: Any) -> Iterator[str]:
    """A new database straight from template1: no schema, no migration applied."""
    name = f"wheel_{os.getpid()}_{time.monotonic_ns()}"
    janitor = DatabaseJanitor(
        user=pg_server.user, host=pg_server.host, port=pg_server.port, dbname=name
    )
    janitor.init()
    try:
        yield pg_server.url(name)
    finally:
        janitor.drop()


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def test_installed_wheel_alone_migrates_and_serves(
    installed: Path, empty_db: str, tmp_path: Path
) -> None:
    work = tmp_path / "cwd"  # no source tree, no .env: `python -I` ignores the cwd anyway
    work.mkdir()
    env = {
        **environ_without_bitloot(),
        "DATABASE_URL": empty_db,
        "BITLOOT_DATA_DIR": str(tmp_path / "data"),
        "BITLOOT_LOG_FORMAT": "json",
    }

    def run(code: str) -> str:
        return subprocess.run(
            [str(installed), "-I", "-c", code],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()

    prefix = Path(run("import sys; print(sys.prefix)"))
    assert prefix == installed.parent.parent
    for module in ("bitloot", "bitloot.db.migrate"):
        where = Path(run(f"import {module} as m; print(m.__file__)"))
        assert where.is_relative_to(prefix), f"{module} is not the wheel's: {where}"
    found = Path(run("from bitloot.db.migrate import migrations_dir; print(migrations_dir())"))
    assert found.is_relative_to(prefix), found
    assert sorted(p.name for p in found.glob("*.sql")) == SOURCE_MIGRATIONS

    migrate = subprocess.run(
        [str(installed), "-I", "-m", "bitloot", "migrate"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    with psycopg.connect(empty_db) as conn:
        applied = [r[0] for r in conn.execute("SELECT migration_id FROM _yoyo_migration")]
    assert sorted(applied) == [name.removesuffix(".sql") for name in SOURCE_MIGRATIONS]

    port = free_port()
    serve_env = {
        **env,
        "BITLOOT_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "BITLOOT_MASTER_KEYS": generate_master_key("k1"),
        "BITLOOT_JWT_SECRET": "wheel-test-jwt-secret-long-enough-for-hs256-0123",
        "BITLOOT_NOWPAYMENTS_API_KEY": "wheel-np-key",
        "BITLOOT_NOWPAYMENTS_IPN_SECRET": "wheel-ipn-secret",
        "BITLOOT_KINGUIN_API_KEY": "wheel-kinguin-key",
        "BITLOOT_KINGUIN_WEBHOOK_SECRET": "wheel-kinguin-webhook-secret",
        "BITLOOT_STORAGE_URL": (tmp_path / "objects").as_uri(),
        "BITLOOT_METRICS_PORT": "0",
    }
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(installed), "-I", "-m", "bitloot", "serve", "--port", str(port)],
            cwd=work,
            env=serve_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        statuses = (0, 0)
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"serve exited {proc.returncode}:\n{log_path.read_text()}"
            statuses = (_get(f"{base}/healthz"), _get(f"{base}/readyz"))
            if statuses == (200, 200):
                break
            time.sleep(0.2)
        assert statuses == (200, 200), f"healthz, readyz: {statuses}\n{log_path.read_text()}"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
    assert proc.returncode == 0, log_path.read_text()
