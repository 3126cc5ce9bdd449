"""`bitloot token` as a real process: prints only a verifiable token, or one line on error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jwt

from bitloot.config import environ_without_bitloot

SECRET = "cli-test-secret-that-is-long-enough-123"


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bitloot", "token", *args],
        cwd=tmp_path,  # no stray .env file
        env={**environ_without_bitloot(), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_token_prints_a_verifiable_jwt(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        "--sub",
        "user-42",
        "--email",
        "a@example.com",
        "--admin",
        "--ttl",
        "120",
        BITLOOT_JWT_SECRET=SECRET,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    (token,) = result.stdout.splitlines()
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "user-42"
    assert claims["email"] == "a@example.com"
    assert claims["role"] == "admin"
    assert claims["exp"] - claims["iat"] == 120


def test_token_defaults_to_a_customer(tmp_path: Path) -> None:
    result = run(tmp_path, "--sub", "u", BITLOOT_JWT_SECRET=SECRET)
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["role"] == "customer"
    assert "email" not in claims


def test_token_without_secret_is_one_line_exit_2(tmp_path: Path) -> None:
    result = run(tmp_path, "--sub", "u")
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("bitloot: ")
    assert "BITLOOT_JWT_SECRET" in line
    assert "Traceback" not in result.stderr


def test_short_secret_is_refused_without_echoing_it(tmp_path: Path) -> None:
    result = run(tmp_path, "--sub", "u", BITLOOT_JWT_SECRET="tiny-secret-xyz")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "BITLOOT_JWT_SECRET" in line
    assert "tiny-secret-xyz" not in result.stderr
