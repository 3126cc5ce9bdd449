"""The S3/R2 backend against a real moto server over HTTP.

moto checks neither presigned signatures nor expiry (docs/tested-facts.md), so expiry is
asserted on the URL we generate here; test_s3_enforced.py proves signatures and expiry
against a server that checks them (nanio), and the local backend's tests its own expiry.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aioboto3
import aiohttp
import pytest
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from bitloot.processes import free_port
from bitloot.storage import (
    S3ObjectStorage,
    StorageError,
    object_key_for,
    open_storage,
    storage_from_url,
)

BUCKET = "bitloot-keys"
SIGNING_KEY = b"s" * 32


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def make_storage(endpoint: str, bucket: str = BUCKET, **kwargs: object) -> S3ObjectStorage:
    return S3ObjectStorage(
        bucket,
        endpoint_url=endpoint,
        access_key_id="testing-access",
        secret_access_key="testing-secret-do-not-print",
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
async def storage(moto_endpoint: str) -> AsyncIterator[S3ObjectStorage]:
    async with make_storage(moto_endpoint) as s3:
        await s3.client.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "auto"}
        )
        yield s3


async def test_check_passes_for_an_existing_bucket(storage: S3ObjectStorage) -> None:
    await storage.check()


def _record_requests(client: Any) -> list[tuple[str, dict[str, str]]]:
    """Every request `client` sends from now on: (operation, headers as sent)."""
    sent: list[tuple[str, dict[str, str]]] = []

    def before_send(request: Any, event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        sent.append((operation, {k.lower(): str(v) for k, v in request.headers.items()}))

    client.meta.events.register("before-send.s3", before_send)
    return sent


def _checksum_headers(headers: dict[str, str]) -> list[str]:
    return sorted(
        name
        for name, value in headers.items()
        if name.startswith(("x-amz-checksum-", "x-amz-sdk-checksum"))
        or name in ("x-amz-trailer", "x-amz-decoded-content-length")
        or (name == "content-encoding" and "aws-chunked" in value)
    )


async def test_uploads_carry_no_checksum_header_or_trailer(moto_endpoint: str) -> None:
    async with make_storage(moto_endpoint) as s3:
        sent = _record_requests(s3.client)
        await s3.put(object_key_for(uuid.uuid4(), "kg-c"), b"sealed" * 1000,
                     content_type="text/plain", metadata={"order-id": "x"})  # fmt: skip
    puts = [headers for operation, headers in sent if operation == "PutObject"]
    assert puts, sent
    assert [_checksum_headers(h) for h in puts] == [[]] * len(puts)


async def test_the_checksum_recorder_sees_botocores_default_checksums(moto_endpoint: str) -> None:
    """The hook above would see a checksum: botocore's default config sends one."""
    session = aioboto3.Session(aws_access_key_id="a", aws_secret_access_key="b")
    async with session.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1") as raw:
        sent = _record_requests(raw)
        await raw.put_object(Bucket=BUCKET, Key="orders/x/default.bin", Body=b"x")
    puts = [headers for operation, headers in sent if operation == "PutObject"]
    assert puts and _checksum_headers(puts[0]), puts


async def test_the_startup_check_uses_object_operations_only(moto_endpoint: str) -> None:
    """An R2 token scoped to objects may be refused HeadBucket: the check never asks it."""
    async with make_storage(moto_endpoint) as s3:
        await s3.client.create_bucket(
            Bucket="objects-only", CreateBucketConfiguration={"LocationConstraint": "auto"}
        )
    async with make_storage(moto_endpoint, bucket="objects-only") as s3:
        sent = _record_requests(s3.client)

        def refuse_bucket_calls(**_: Any) -> None:
            raise ClientError({"Error": {"Code": "AccessDenied"}}, "HeadBucket")

        for operation in ("HeadBucket", "ListObjects", "ListObjectsV2", "GetBucketLocation"):
            s3.client.meta.events.register(f"before-call.s3.{operation}", refuse_bucket_calls)
        await s3.check()
        assert not await s3.exists("bitloot-startup-check")  # read, never written
    assert [operation for operation, _ in sent] == ["GetObject", "HeadObject"]


async def test_presigned_url_serves_the_object_to_a_plain_get(storage: S3ObjectStorage) -> None:
    key = object_key_for(uuid.uuid4(), "kg-1")
    await storage.put(key, b"\x01sealed", content_type="text/plain", metadata={})

    url = await storage.signed_get_url(key, 900)

    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        assert await response.read() == b"\x01sealed"


async def test_presigned_url_is_sigv4_path_style_with_the_ttl(
    storage: S3ObjectStorage, moto_endpoint: str
) -> None:
    key = object_key_for(uuid.uuid4(), "kg-1")
    url = await storage.signed_get_url(key, 900)

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert f"{parts.scheme}://{parts.netloc}" == moto_endpoint
    assert parts.path == f"/{BUCKET}/{key}"
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url
    assert "X-Amz-Expires=900" in url
    assert query["X-Amz-Credential"][0].endswith("/auto/s3/aws4_request")
    assert "testing-secret-do-not-print" not in url


async def test_put_stores_content_type_and_metadata(storage: S3ObjectStorage) -> None:
    order_id = uuid.uuid4()
    key = object_key_for(order_id, "kg-2")
    await storage.put(key, b"blob", content_type="image/png", metadata={"order-id": str(order_id)})
    head = await storage.client.head_object(Bucket=BUCKET, Key=key)
    assert head["ContentType"] == "image/png"
    assert head["Metadata"] == {"order-id": str(order_id)}


async def test_retried_put_overwrites_the_same_key(storage: S3ObjectStorage) -> None:
    key = object_key_for(uuid.uuid4(), "kg-3")
    await storage.put(key, b"first", content_type="text/plain", metadata={})
    await storage.put(key, b"second", content_type="text/plain", metadata={})
    got = await storage.client.get_object(Bucket=BUCKET, Key=key)
    assert await got["Body"].read() == b"second"


async def test_exists_and_delete(storage: S3ObjectStorage) -> None:
    key = object_key_for(uuid.uuid4(), "kg-4")
    assert not await storage.exists(key)
    await storage.put(key, b"x", content_type="text/plain", metadata={})
    assert await storage.exists(key)
    await storage.delete(key)
    assert not await storage.exists(key)
    await storage.delete(key)  # deleting twice is fine


async def test_metadata_with_an_email_is_refused(storage: S3ObjectStorage) -> None:
    with pytest.raises(ValueError, match="email"):
        await storage.put(
            "orders/x/y.bin", b"x", content_type="text/plain", metadata={"buyer": "a@b.example"}
        )


async def test_ttl_outside_sigv4_limits_is_refused(storage: S3ObjectStorage) -> None:
    with pytest.raises(ValueError):
        await storage.signed_get_url("orders/x/y.bin", 0)
    with pytest.raises(ValueError):
        await storage.signed_get_url("orders/x/y.bin", 8 * 24 * 3600)


async def test_missing_bucket_fails_the_startup_check(moto_endpoint: str) -> None:
    async with make_storage(moto_endpoint, bucket="no-such-bucket") as s3:
        with pytest.raises(StorageError, match=r"'no-such-bucket'.*does not exist"):
            await s3.check()


async def test_unreachable_endpoint_fails_the_startup_check() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with make_storage(endpoint, max_attempts=1, connect_timeout=2) as s3:
        with pytest.raises(StorageError, match="cannot reach the S3 endpoint") as info:
            await s3.check()
    assert endpoint in str(info.value)
    assert "BITLOOT_S3_ENDPOINT_URL" in str(info.value)


def test_refused_credentials_name_the_variables_not_the_values() -> None:
    s3 = make_storage("http://r2.example")
    denied = ClientError({"Error": {"Code": "InvalidAccessKeyId", "Message": "nope"}}, "HeadBucket")
    error = s3._error("check", None, denied)
    assert "BITLOOT_S3_ACCESS_KEY_ID" in str(error)
    assert "testing-secret-do-not-print" not in str(error) + repr(s3)


async def test_using_a_closed_storage_is_a_clear_error(moto_endpoint: str) -> None:
    s3 = make_storage(moto_endpoint)
    with pytest.raises(RuntimeError, match="not open"):
        await s3.exists("orders/x/y.bin")


async def test_open_storage_builds_an_open_s3_backend(
    storage: S3ObjectStorage, moto_endpoint: str
) -> None:
    s3 = await open_storage(
        f"s3://{BUCKET}",
        public_url="http://127.0.0.1:8080",
        signing_keys=[SIGNING_KEY],
        s3_endpoint_url=moto_endpoint,
        s3_access_key_id="a",
        s3_secret_access_key="b",
    )
    try:
        assert isinstance(s3, S3ObjectStorage)
        await s3.check()
    finally:
        await s3.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://bucket", "BITLOOT_STORAGE_URL must start with"),
        ("bucket", "BITLOOT_STORAGE_URL must start with"),
        ("s3://Bad_Bucket", "BITLOOT_STORAGE_URL must be s3://"),
        ("s3://bucket/prefix", "BITLOOT_STORAGE_URL must be s3://"),
        ("file://", "BITLOOT_STORAGE_URL file://"),
    ],
)
def test_bad_storage_url_names_the_variable(url: str, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        storage_from_url(url, public_url="http://x", signing_keys=[SIGNING_KEY])


def test_half_configured_credentials_are_refused() -> None:
    with pytest.raises(StorageError, match="BITLOOT_S3_SECRET_ACCESS_KEY"):
        storage_from_url(
            "s3://bucket", public_url="http://x", signing_keys=[SIGNING_KEY], s3_access_key_id="a"
        )
