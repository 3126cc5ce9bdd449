"""`bitloot serve` refuses webhook secrets shorter than 16 bytes (each entry of a rotation
list too) with one line naming the variable, and warns when user JWTs are accepted
without issuer or audience checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bitloot.config import (
    MIN_WEBHOOK_SECRET_BYTES,
    ConfigError,
    check_webhook_secrets,
    load_settings,
)
from bitloot.server import warn_about_unpinned_jwt_claims
from bitloot.sim.app import SimConfig

LONG = "a-webhook-secret-long-enough"
SHORT = "hunter2-secret"  # 14 bytes


def serve(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BITLOOT_")}
    base.pop("DATABASE_URL", None)
    settings = {
        "BITLOOT_NOWPAYMENTS_API_KEY": "np-key",
        "BITLOOT_NOWPAYMENTS_IPN_SECRET": LONG,
        "BITLOOT_KINGUIN_WEBHOOK_SECRET": LONG,
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "bitloot", "serve", "--port", "0"],
        env={**base, **settings},
        cwd=tmp_path,  # no stray .env file
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BITLOOT_NOWPAYMENTS_IPN_SECRET", SHORT),
        ("BITLOOT_KINGUIN_WEBHOOK_SECRET", SHORT),
        ("BITLOOT_NOWPAYMENTS_IPN_SECRET", f"{LONG},{SHORT}"),  # while rotating
        ("BITLOOT_KINGUIN_WEBHOOK_SECRET", f"{SHORT}, {LONG}"),
        ("BITLOOT_KINGUIN_WEBHOOK_SECRET", "CHANGE_ME"),  # the example, unfilled
    ],
)
def test_serve_refuses_a_short_webhook_secret(tmp_path: Path, variable: str, value: str) -> None:
    result = serve(tmp_path, **{variable: value})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0] and "16 bytes" in lines[0]
    assert SHORT not in result.stderr and "CHANGE_ME" not in result.stderr
    assert "Traceback" not in result.stderr


def test_sixteen_bytes_are_enough_and_entries_are_stripped() -> None:
    exact = "x" * MIN_WEBHOOK_SECRET_BYTES
    settings = load_settings(
        _env_file=None,
        nowpayments_ipn_secret=f" {exact} , {LONG} ",
        kinguin_webhook_secret=exact,
    )
    check_webhook_secrets(settings)
    with pytest.raises(ConfigError, match="BITLOOT_NOWPAYMENTS_IPN_SECRET"):
        check_webhook_secrets(load_settings(_env_file=None, nowpayments_ipn_secret=exact[1:] + " "))


def test_multibyte_secrets_count_bytes() -> None:
    # Eight characters, sixteen bytes: what the HMAC and the comparison see.
    check_webhook_secrets(load_settings(_env_file=None, kinguin_webhook_secret="é" * 8))


def test_the_simulators_and_the_test_settings_use_long_secrets() -> None:
    config = SimConfig()
    check_webhook_secrets(
        load_settings(
            _env_file=None,
            nowpayments_ipn_secret=config.nowpayments_ipn_secret,
            kinguin_webhook_secret=config.kinguin_webhook_secret,
        )
    )


@pytest.mark.parametrize(
    ("issuer", "audience", "unset"),
    [
        (None, None, ["BITLOOT_JWT_ISSUER", "BITLOOT_JWT_AUDIENCE"]),
        ("https://idp.example", None, ["BITLOOT_JWT_AUDIENCE"]),
        (None, "bitloot", ["BITLOOT_JWT_ISSUER"]),
        ("https://idp.example", "bitloot", None),
    ],
)
def test_serve_warns_when_jwt_issuer_or_audience_is_unset(
    issuer: str | None, audience: str | None, unset: list[str] | None
) -> None:
    settings = load_settings(
        _env_file=None,
        jwt_secret="a-jwt-secret-that-is-long-enough-for-hs256",
        jwt_issuer=issuer,
        jwt_audience=audience,
    )
    with capture_logs() as logs:
        warn_about_unpinned_jwt_claims(settings)
    warnings = [e for e in logs if e["event"] == "auth.jwt_claims_not_checked"]
    if unset is None:
        assert warnings == []
    else:
        assert warnings == [
            {"event": "auth.jwt_claims_not_checked", "unset": unset, "log_level": "warning"}
        ]


def test_no_warning_when_no_user_jwt_is_accepted_at_all() -> None:
    settings = load_settings(_env_file=None, jwt_secret=None, jwt_public_key=None)
    with capture_logs() as logs:
        warn_about_unpinned_jwt_claims(settings)
    assert logs == []


def test_serve_logs_the_warning_at_start(tmp_path: Path) -> None:
    # Any later failure (no database here) comes after the warning.
    result = serve(
        tmp_path,
        BITLOOT_JWT_SECRET="a-jwt-secret-that-is-long-enough-for-hs256",
        BITLOOT_LOG_FORMAT="json",
        DATABASE_URL="postgresql://nobody@127.0.0.1:1/none?connect_timeout=1",
    )
    assert "auth.jwt_claims_not_checked" in result.stderr
