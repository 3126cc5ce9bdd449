"""`bitloot storage check`, run as operators run it, against a store that says no (nanio,
with R2's CORS behaviour in front where a test needs it), the local backend, and moto for
reading CORS rules (nanio has none)."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness import Served, serve_app
from moto.server import ThreadedMotoServer
from s3_support import Nanio, cors_proxy_app, production_cors_rule

from bitloot.config import environ_without_bitloot
from bitloot.storage import S3ObjectStorage
from bitloot.storage.golive import Step, check_storage, passed
from bitloot.storage.golive_s3 import cors_rule_allows, origin_of
from bitloot.storage.steps import CANARY_PREFIX
from bitloot.vault.crypto import generate_master_key

ORIGIN = "https://keys.example.com"
PUBLIC_URL = f"{ORIGIN}/"
WRONG_SECRET = "wrong-secret-that-must-never-be-printed"


@dataclass
class Ran:
    status: int
    stdout: str
    stderr: str

    @property
    def steps(self) -> list[str]:
        return self.stdout.splitlines()[1:-1]  # between "checking ..." and the verdict

    def line(self, prefix: str) -> str:
        (found,) = [line for line in self.steps if line.startswith(prefix)]
        return found


async def storage_check(tmp_path: Path, **env: str) -> Ran:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bitloot", "storage", "check",
        cwd=tmp_path,
        env={**environ_without_bitloot(), "BITLOOT_PUBLIC_URL": PUBLIC_URL, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode())


@pytest.fixture(scope="module")
async def bucket(nanio: Nanio) -> str:
    name = f"check-{uuid.uuid4().hex[:12]}"
    await nanio.create_bucket(name)
    return name


def s3_env(nanio: Nanio, bucket: str, endpoint: str | None = None, **extra: str) -> dict[str, str]:
    return {
        "BITLOOT_STORAGE_URL": f"s3://{bucket}",
        "BITLOOT_S3_ENDPOINT_URL": endpoint or nanio.endpoint,
        "BITLOOT_S3_ACCESS_KEY_ID": nanio.access_key,
        "BITLOOT_S3_SECRET_ACCESS_KEY": nanio.secret_key,
        **extra,
    }


async def proxy(nanio: Nanio, rules: list[dict[str, Any]], **kw: Any) -> Served:
    return await serve_app(cors_proxy_app(nanio.endpoint, rules, **kw))


@pytest.fixture
async def r2_like(nanio: Nanio) -> AsyncIterator[Served]:
    """nanio behind the CORS rule PRODUCTION.md prescribes for the key page's origin."""
    served = await proxy(nanio, [production_cors_rule(ORIGIN)])
    yield served
    await served.runner.cleanup()


def assert_clean(ran: Ran, *secrets: str) -> None:
    for secret in (WRONG_SECRET, *secrets):
        assert secret not in ran.stdout + ran.stderr
    assert "Traceback" not in ran.stderr


async def test_passes_on_a_bucket_with_the_production_cors_rule(
    nanio: Nanio, bucket: str, r2_like: Served, tmp_path: Path
) -> None:
    ran = await storage_check(tmp_path, **s3_env(nanio, bucket, r2_like.url))
    assert ran.status == 0, ran.stdout + ran.stderr
    assert ran.stdout.splitlines()[-1] == "passed: the key path works"
    names = [line.split(" (")[0] for line in ran.steps]
    assert [line[:4] for line in ran.steps] == ["ok  "] * 9, ran.stdout
    assert names[1:8] == [
        "ok  read back",
        "ok  presigned GET within the TTL",
        "ok  clock agrees with the store's",
        "ok  expired presigned URL refused",
        "ok  tampered presigned URL refused",
        f"ok  CORS rule lets {ORIGIN} GET",
        f"ok  browser download from {ORIGIN}",
    ]
    assert ran.line("ok  expired presigned URL refused").endswith("(HTTP 403)")
    assert ran.line("ok  put ").startswith(f"ok  put {CANARY_PREFIX}")
    assert await nanio.keys(bucket, CANARY_PREFIX) == []  # the canary is gone
    assert_clean(ran, nanio.secret_key)


async def test_a_token_that_cannot_read_the_cors_rule_passes_with_a_skip(
    nanio: Nanio, bucket: str, tmp_path: Path
) -> None:
    served = await proxy(nanio, [production_cors_rule(ORIGIN)], rule_readable=False)
    try:
        ran = await storage_check(tmp_path, **s3_env(nanio, bucket, served.url))
    finally:
        await served.runner.cleanup()
    assert ran.status == 0, ran.stdout
    skipped = ran.line("skip CORS rule")
    assert "may not read the bucket's CORS rule (AccessDenied)" in skipped
    assert "check by hand" in skipped and f'"AllowedOrigins": ["{ORIGIN}"]' in skipped
    assert ran.line("ok  browser download").endswith(f"(Access-Control-Allow-Origin: {ORIGIN})")
    assert ran.stdout.splitlines()[-1] == "passed: the key path works; read the warn/skip lines"


async def test_a_cors_rule_for_another_origin_fails(
    nanio: Nanio, bucket: str, tmp_path: Path
) -> None:
    served = await proxy(nanio, [production_cors_rule("https://shop.example.com")])
    try:
        ran = await storage_check(tmp_path, **s3_env(nanio, bucket, served.url))
    finally:
        await served.runner.cleanup()
    assert ran.status == 1, ran.stdout
    rule = ran.line("FAIL CORS rule")
    assert "(origins allowed: https://shop.example.com)" in rule
    assert f"-> add {ORIGIN} to the AllowedOrigins" in rule
    assert "no CORS header, so the browser would block the key ->" in ran.line("FAIL browser")
    assert await nanio.keys(bucket, CANARY_PREFIX) == []


async def test_nanio_alone_answers_no_cors_and_the_check_says_so(
    nanio: Nanio, bucket: str, tmp_path: Path
) -> None:
    ran = await storage_check(tmp_path, **s3_env(nanio, bucket))
    assert ran.status == 1
    assert ran.line("warn CORS rule").startswith(
        f"warn CORS rule lets {ORIGIN} GET: the store answered GetBucketCors without any rule"
    )
    assert "set the bucket's CORS policy to" in ran.line("FAIL browser download")
    assert [line for line in ran.steps if line.startswith("FAIL")] == [ran.line("FAIL browser")]
    assert await nanio.keys(bucket, CANARY_PREFIX) == []


@pytest.mark.parametrize(
    ("change", "failure"),
    [
        ({"BITLOOT_S3_SECRET_ACCESS_KEY": WRONG_SECRET},
         "HTTP 403 SignatureDoesNotMatch -> BITLOOT_S3_SECRET_ACCESS_KEY does not belong to "
         "BITLOOT_S3_ACCESS_KEY_ID"),
        ({"BITLOOT_S3_ACCESS_KEY_ID": "AKIAUNKNOWN"},
         "HTTP 403 InvalidAccessKeyId -> BITLOOT_S3_ACCESS_KEY_ID is not a key this endpoint"),
        ({"BITLOOT_STORAGE_URL": "s3://no-such-bucket-here"},
         "HTTP 404 NoSuchBucket -> there is no bucket 'no-such-bucket-here' at "),
    ],
)  # fmt: skip
async def test_refused_credentials_or_a_missing_bucket_fail_with_what_to_change(
    nanio: Nanio, bucket: str, r2_like: Served, tmp_path: Path, change: dict[str, str],
    failure: str,
) -> None:  # fmt: skip
    ran = await storage_check(tmp_path, **{**s3_env(nanio, bucket, r2_like.url), **change})
    assert ran.status == 1
    assert ran.steps[0].startswith(f"FAIL put {CANARY_PREFIX}")
    assert failure in ran.steps[0]
    assert ran.steps[1:] == ["skip every other step: they need the canary object"]
    assert ran.stdout.splitlines()[-1].startswith("FAILED: 1 step(s)")
    assert await nanio.keys(bucket, CANARY_PREFIX) == []
    assert_clean(ran, nanio.secret_key)


async def test_an_unreachable_endpoint_names_the_variable(nanio: Nanio, tmp_path: Path) -> None:
    from bitloot.processes import free_port

    ran = await storage_check(
        tmp_path, **s3_env(nanio, "any-bucket", f"http://127.0.0.1:{free_port()}")
    )
    assert ran.status == 1
    assert "cannot reach http://127.0.0.1:" in ran.steps[0]
    assert "-> check BITLOOT_S3_ENDPOINT_URL" in ran.steps[0]


# --- the local backend ---------------------------------------------------------------------------


async def test_the_local_backend_checks_its_own_signer(tmp_path: Path) -> None:
    objects = tmp_path / "objects"
    master_key = generate_master_key("k1")
    ran = await storage_check(
        tmp_path, BITLOOT_STORAGE_URL=f"file://{objects}", BITLOOT_MASTER_KEYS=master_key
    )
    assert ran.status == 0, ran.stdout + ran.stderr
    assert [line.split(" (")[0].split(":")[0] for line in ran.steps] == [
        ran.steps[0].split(" (")[0],
        "ok  read back",
        "ok  signed URL round trip",
        "ok  expired signed URL refused",
        "ok  tampered signed URL refused",
        "skip CORS",
        ran.steps[-1],
    ]
    assert ran.steps[0].startswith(f"ok  write {CANARY_PREFIX}")
    assert ran.steps[-1].startswith(f"ok  delete {CANARY_PREFIX}")
    assert f"signed URL round trip ({ORIGIN}/objects/..." in ran.steps[2]
    assert "does not apply" in ran.line("skip CORS")
    assert list((objects / CANARY_PREFIX.rstrip("/")).iterdir()) == []
    assert_clean(ran, master_key.split(":", 1)[1])


async def test_an_unwritable_local_root_fails(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    ran = await storage_check(
        tmp_path,
        BITLOOT_STORAGE_URL=f"file://{tmp_path}/a-file/objects",
        BITLOOT_MASTER_KEYS=generate_master_key("k1"),
    )
    assert ran.status == 1
    assert ran.steps[0].startswith(f"FAIL write {CANARY_PREFIX}")
    assert "-> make " in ran.steps[0] and "writable by this user" in ran.steps[0]


async def test_a_bad_storage_url_is_one_line_and_exit_2(tmp_path: Path) -> None:
    ran = await storage_check(tmp_path, BITLOOT_STORAGE_URL="s3://Bad_Bucket")
    assert ran.status == 2
    assert ran.stderr.strip().splitlines() == [
        "bitloot: BITLOOT_STORAGE_URL must be s3://bucket-name (a valid bucket name, no path)"
    ]


# --- reading CORS rules: moto stores and returns them (nanio cannot) ------------------------------


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.mark.parametrize(
    ("allowed", "verdict"),
    [([ORIGIN], "ok"), (["https://*.example.com"], "ok"), (["*"], "ok"),
     (["https://shop.example.com"], "FAIL"), ([], "FAIL")],
)  # fmt: skip
async def test_the_cors_rule_is_read_and_judged(
    moto_endpoint: str, allowed: list[str], verdict: str
) -> None:
    bucket = f"cors-{uuid.uuid4().hex[:12]}"
    storage = S3ObjectStorage(
        bucket, endpoint_url=moto_endpoint, access_key_id="a", secret_access_key="b"
    )
    async with storage as s3:
        await s3.client.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "auto"}
        )
        if allowed:
            rule = {**production_cors_rule(ORIGIN), "AllowedOrigins": allowed}
            del rule["AllowedHeaders"]
            await s3.client.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [rule]})
    steps: list[Step] = await check_storage(
        storage, public_url=PUBLIC_URL, ttl_seconds=900, report=lambda _: None
    )
    (rule_step,) = [s for s in steps if s.name == f"CORS rule lets {ORIGIN} GET"]
    assert rule_step.verdict == verdict, rule_step.line()
    if not allowed:
        assert "the bucket has no CORS rule" in rule_step.detail
    # moto serves expired URLs (docs/tested-facts.md): the check catches such a store.
    (expired,) = [s for s in steps if s.name.startswith("expired presigned URL refused")]
    assert expired.verdict == "FAIL" and "HTTP 200: the store served it" in expired.detail
    assert not passed(steps)


@pytest.mark.parametrize(
    ("url", "origin"),
    [("https://Keys.Example.com/", "https://keys.example.com"),
     ("https://keys.example.com:443/x?y", "https://keys.example.com"),
     ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
     ("http://[::1]:80/", "http://[::1]")],
)  # fmt: skip
def test_the_origin_is_what_a_browser_sends(url: str, origin: str) -> None:
    assert origin_of(url) == origin


def test_cors_rules_need_get_and_a_matching_origin() -> None:
    assert not cors_rule_allows([{"AllowedOrigins": [ORIGIN], "AllowedMethods": ["PUT"]}], ORIGIN)
    assert cors_rule_allows([{"AllowedOrigins": [ORIGIN], "AllowedMethods": ["get"]}], ORIGIN)
    wildcard = [{"AllowedOrigins": ["https://*.example.com"], "AllowedMethods": ["GET"]}]
    assert not cors_rule_allows(wildcard, "https://example.com.evil.test")
    assert not cors_rule_allows(wildcard, "http://keys.example.com")
