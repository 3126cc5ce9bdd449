"""The S3/R2 backend against a server that checks what R2 checks (nanio: SigV4 on every
request, the signature and expiry of every presigned GET; docs/tested-facts.md), and the
real `bitloot serve` and `bitloot worker` refusing to start on a store that says no."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import botocore.auth
import pytest
from s3_support import Nanio

from bitloot.config import Settings, environ_without_bitloot
from bitloot.processes import free_port
from bitloot.sim.app import SimConfig
from bitloot.storage import S3ObjectStorage, StorageError, object_key_for
from bitloot.vault.crypto import generate_master_key

# What `bitloot serve` presigns with unless BITLOOT_SIGNED_URL_TTL says otherwise.
CONFIGURED_TTL = Settings.model_fields["signed_url_ttl"].default
WRONG_SECRET = "wrong-secret-that-must-never-be-printed"


@pytest.fixture(scope="module")
async def bucket(nanio: Nanio) -> str:
    name = f"enforced-{uuid.uuid4().hex[:12]}"
    await nanio.create_bucket(name)
    return name


@pytest.fixture
async def storage(nanio: Nanio, bucket: str) -> AsyncIterator[S3ObjectStorage]:
    async with nanio.storage(bucket) as s3:
        yield s3


async def stored(storage: S3ObjectStorage, data: bytes = b"\x01sealed") -> str:
    key = object_key_for(uuid.uuid4(), "kg-1")
    await storage.put(key, data, content_type="application/octet-stream", metadata={})
    return key


async def status_of(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.read()


def signed_in_the_past(monkeypatch: pytest.MonkeyPatch, seconds: int) -> None:
    """Make botocore sign as if it were `seconds` ago (it reads its clock from here)."""
    then = (datetime.now(UTC) - timedelta(seconds=seconds)).replace(tzinfo=None)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *_, **__: then)


async def test_upload_then_presigned_get_within_the_ttl(storage: S3ObjectStorage) -> None:
    key = await stored(storage, b"\x01ciphertext")
    url = await storage.signed_get_url(key, CONFIGURED_TTL)
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == [str(CONFIGURED_TTL)]
    assert await status_of(url) == (200, b"\x01ciphertext")


async def test_a_tampered_presigned_signature_is_refused(storage: S3ObjectStorage) -> None:
    key = await stored(storage)
    url = await storage.signed_get_url(key, CONFIGURED_TTL)
    signature = parse_qs(urlsplit(url).query)["X-Amz-Signature"][0]
    forged = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    assert (await status_of(url))[0] == 200
    assert (await status_of(url.replace(signature, forged)))[0] == 403
    other_key = url.replace(key, object_key_for(uuid.uuid4(), "kg-1"))  # signed for another
    assert (await status_of(other_key))[0] == 403


async def test_a_wrong_secret_is_refused(
    storage: S3ObjectStorage, nanio: Nanio, bucket: str
) -> None:
    key = await stored(storage)
    async with nanio.storage(bucket, secret=WRONG_SECRET, max_attempts=1) as wrong:
        with pytest.raises(StorageError, match=r"refused \(SignatureDoesNotMatch\)") as put:
            await stored(wrong)
        with pytest.raises(StorageError, match="BITLOOT_S3_SECRET_ACCESS_KEY") as check:
            await wrong.check()
        forged_url = await wrong.signed_get_url(key, CONFIGURED_TTL)
    assert (await status_of(forged_url))[0] == 403
    assert WRONG_SECRET not in str(put.value) + str(check.value)


async def test_a_url_presigned_with_the_configured_ttl_is_refused_once_it_passed(
    storage: S3ObjectStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = await stored(storage)
    with monkeypatch.context() as clock:
        signed_in_the_past(clock, CONFIGURED_TTL - 20)
        still_valid = await storage.signed_get_url(key, CONFIGURED_TTL)
    with monkeypatch.context() as clock:
        signed_in_the_past(clock, CONFIGURED_TTL + 1)
        expired = await storage.signed_get_url(key, CONFIGURED_TTL)
    assert (await status_of(still_valid))[0] == 200
    assert (await status_of(expired))[0] == 403


async def test_signing_as_of_a_past_time_restores_the_clock(storage: S3ObjectStorage) -> None:
    """What `bitloot storage check` uses for its expiry step."""
    key = await stored(storage)
    then = datetime.now(UTC) - timedelta(seconds=CONFIGURED_TTL + 1)
    expired = await storage.signed_get_url_as_of(key, CONFIGURED_TTL, then)
    assert parse_qs(urlsplit(expired).query)["X-Amz-Date"] == [then.strftime("%Y%m%dT%H%M%SZ")]
    assert (await status_of(expired))[0] == 403
    fresh = await storage.signed_get_url(key, CONFIGURED_TTL)
    assert (await status_of(fresh))[0] == 200


async def test_a_missing_bucket_fails_the_startup_check(nanio: Nanio) -> None:
    async with nanio.storage("no-such-bucket-here") as s3:
        with pytest.raises(StorageError, match=r"'no-such-bucket-here'.*does not exist"):
            await s3.check()


async def test_the_startup_check_passes_and_writes_nothing(
    storage: S3ObjectStorage, nanio: Nanio, bucket: str
) -> None:
    before = await nanio.keys(bucket)
    await storage.check()
    assert await nanio.keys(bucket) == before


# --- the real commands -------------------------------------------------------------------------


def start_command(command: str, env: dict[str, str], tmp_path: Path) -> subprocess.Popen[str]:
    args = {"serve": ["--port", str(free_port())], "worker": []}[command]
    return subprocess.Popen(
        [sys.executable, "-m", "bitloot", command, *args],
        cwd=tmp_path,
        env={**environ_without_bitloot(), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("problem", ["wrong secret", "missing bucket"])
async def test_serve_and_worker_refuse_to_start_on_a_store_that_says_no(
    nanio: Nanio, bucket: str, db_url: str, tmp_path: Path, problem: str
) -> None:
    config = SimConfig()
    env = {
        "DATABASE_URL": db_url,
        "BITLOOT_MASTER_KEYS": generate_master_key("k1"),
        "BITLOOT_DATA_DIR": str(tmp_path / "data"),
        "BITLOOT_MAIL_DIR": str(tmp_path / "mail"),
        "BITLOOT_NOWPAYMENTS_API_KEY": config.nowpayments_api_key,
        "BITLOOT_NOWPAYMENTS_IPN_SECRET": config.nowpayments_ipn_secret,
        "BITLOOT_KINGUIN_API_KEY": config.kinguin_api_key,
        "BITLOOT_KINGUIN_WEBHOOK_SECRET": config.kinguin_webhook_secret,
        "BITLOOT_METRICS_PORT": "0",
        "BITLOOT_WORKER_METRICS_PORT": "0",
        "BITLOOT_STORAGE_URL": f"s3://{bucket}",
        "BITLOOT_S3_ENDPOINT_URL": nanio.endpoint,
        "BITLOOT_S3_ACCESS_KEY_ID": nanio.access_key,
        "BITLOOT_S3_SECRET_ACCESS_KEY": nanio.secret_key,
    }
    if problem == "wrong secret":
        env["BITLOOT_S3_SECRET_ACCESS_KEY"] = WRONG_SECRET
        expected = (
            f"bitloot: access to bucket {bucket!r} at {nanio.endpoint} was refused "
            "(SignatureDoesNotMatch): check BITLOOT_S3_ACCESS_KEY_ID and "
            "BITLOOT_S3_SECRET_ACCESS_KEY"
        )
    else:
        env["BITLOOT_STORAGE_URL"] = "s3://no-such-bucket-here"
        expected = (
            f"bitloot: bucket 'no-such-bucket-here' at {nanio.endpoint} does not exist "
            "(or is not visible to these credentials)"
        )
    procs = {name: start_command(name, env, tmp_path) for name in ("serve", "worker")}
    for name, proc in procs.items():
        try:
            _, stderr = await asyncio.to_thread(proc.communicate, timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 2, (name, stderr[-2000:])
        lines = [line for line in stderr.splitlines() if line.startswith("bitloot: ")]
        assert lines == [expected], (name, stderr[-2000:])
        assert "Traceback" not in stderr
        assert WRONG_SECRET not in stderr
