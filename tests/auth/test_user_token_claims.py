"""A validly signed user JWT with hostile claims is an `InvalidToken` (a 401), never a crash:
a role that is a list or an object, a subject or email PostgreSQL cannot store or a log
line should not hold, dates that are not numbers, lifetimes past the configured maximum."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from structlog.testing import capture_logs

from bitloot.auth.tokens import InvalidToken, TokenVerifier, mint_user_token
from bitloot.config import Settings, environ_without_bitloot

SECRET = "hs256-test-secret-that-is-long-enough!!"


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"jwt_secret": SECRET, "jwt_issuer": None, "jwt_audience": None}
    values.update(overrides)
    return Settings(_env_file=None, **values)


def token(**claims: Any) -> str:
    now = int(time.time())
    base: dict[str, Any] = {"sub": "user-1", "iat": now, "exp": now + 600}
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not None}, SECRET, algorithm="HS256")


def refused(raw: str, **overrides: Any) -> InvalidToken:
    with pytest.raises(InvalidToken) as info:
        TokenVerifier(settings(**overrides)).verify(raw)
    assert info.value.reason == "claims"
    return info.value


@pytest.mark.parametrize("role", [["admin"], {"admin": True}, 1, True, None, "ADMIN"])
def test_a_role_that_is_not_a_known_string_is_refused(role: Any) -> None:
    # null is JSON null: the claim is present, and not a role.
    raw = jwt.encode(
        {"sub": "u", "iat": int(time.time()), "exp": int(time.time()) + 60, "role": role}, SECRET
    )
    refused(raw)


@pytest.mark.parametrize(
    "sub",
    ["a\x00b", "\x00", "\ud800", "x\udfffy", "line\nbreak", "\x1b[31m", "x" * 256, "", 42, ["u"]],
)
def test_a_subject_that_cannot_be_stored_or_logged_is_refused(sub: Any) -> None:
    refused(token(sub=sub))


def test_a_subject_of_255_printable_characters_is_accepted() -> None:
    sub = "ü" + "x" * 254
    assert TokenVerifier(settings()).verify(token(sub=sub)).subject == sub


@pytest.mark.parametrize("email", ["a\x00@example.com", "\ud800@example.com", "x" * 321, 5])
def test_an_email_claim_that_cannot_be_stored_is_refused(email: Any) -> None:
    refused(token(email=email))


def test_iat_is_required() -> None:
    with pytest.raises(InvalidToken) as info:
        TokenVerifier(settings()).verify(token(iat=None))
    assert info.value.reason == "claims"
    assert "'iat'" in str(info.value)


@pytest.mark.parametrize(
    ("claim", "kind"),
    # (exp=true is 1970: PyJWT already refuses it as expired.)
    [("iat", "string"), ("exp", "string"), ("iat", "bool")],
)
def test_dates_must_be_json_numbers(claim: str, kind: str) -> None:
    now = int(time.time())
    value: Any = {"iat": now, "exp": now + 60}[claim]
    refused(token(**{claim: str(value) if kind == "string" else True}))


def test_fractional_dates_are_numbers_too() -> None:
    now = time.time()
    assert TokenVerifier(settings()).verify(token(iat=now - 0.5, exp=now + 60.25)).subject


@pytest.mark.parametrize("exp", [10**400, 1e300], ids=["10**400", "1e300"])
def test_an_absurd_expiry_is_refused_not_a_crash(exp: Any) -> None:
    refused(token(exp=exp))


def test_a_lifetime_past_the_maximum_is_refused_and_logged() -> None:
    now = int(time.time())
    v = TokenVerifier(settings(jwt_max_lifetime=3600))
    assert v.verify(token(iat=now, exp=now + 3600)).subject == "user-1"
    with capture_logs() as logs, pytest.raises(InvalidToken) as info:
        v.verify(token(iat=now, exp=now + 3601))
    assert info.value.reason == "claims"
    assert {"event": "auth.bad_claim", "claim": "lifetime", "log_level": "warning"} in logs


def test_the_default_maximum_lifetime_is_a_day() -> None:
    assert Settings(_env_file=None).jwt_max_lifetime == 86400
    now = int(time.time())
    refused(token(iat=now, exp=now + 86401))


def test_minting_is_held_to_the_maximum_lifetime() -> None:
    s = settings(jwt_max_lifetime=600)
    claims = jwt.decode(mint_user_token(s, sub="u", ttl=600), SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 600
    with pytest.raises(ValueError, match="BITLOOT_JWT_MAX_LIFETIME"):
        mint_user_token(s, sub="u", ttl=601)


def test_bitloot_token_refuses_a_ttl_past_the_maximum(tmp_path: Path) -> None:
    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bitloot", "token", "--sub", "u", *args],
            cwd=tmp_path,  # no stray .env file
            env={**environ_without_bitloot(), "BITLOOT_JWT_SECRET": SECRET, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    refused = run("--ttl", "86401")
    assert refused.returncode == 2 and refused.stdout == ""
    (line,) = refused.stderr.splitlines()
    assert "BITLOOT_JWT_MAX_LIFETIME" in line
    assert run("--ttl", "86400").returncode == 0
    assert run("--ttl", "7200", BITLOOT_JWT_MAX_LIFETIME="3600").returncode == 2
