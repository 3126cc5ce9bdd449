"""S3-compatible object storage (Cloudflare R2 in production), through aioboto3.

One client is opened in `open()` and kept: a client owns an HTTP connection pool, and
creating one per call would pay a TLS handshake (and credential resolution) every time.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import aioboto3
import botocore.auth
import structlog
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from bitloot.storage.base import (
    ObjectStorage,
    StorageError,
    validate_metadata,
    validate_object_key,
)

log = structlog.get_logger(__name__)

# SigV4 presigned URLs cannot live longer than a week.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
UNREACHABLE = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
)
# Read (never written) by `check()`; its absence is the expected answer.
CHECK_KEY = "bitloot-startup-check"
_NOT_FOUND = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
_DENIED = {
    "401",
    "403",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "Unauthorized",
}


class S3ObjectStorage(ObjectStorage):
    """A bucket on S3, R2, MinIO or anything else that speaks the S3 API with SigV4."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None,
        access_key_id: str | None,
        secret_access_key: str | None,
        region: str = "auto",
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_attempts: int = 4,
    ) -> None:
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self._session = aioboto3.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            region_name=region,
        )
        self._config = Config(
            # R2 accepts only SigV4; without this botocore may presign with SigV2.
            signature_version="s3v4",
            region_name=region,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # "standard" retries throttling, 5xx and connection errors with backoff; a put
            # is safe to retry because it overwrites the same key with the same bytes.
            retries={"max_attempts": max_attempts, "mode": "standard"},
            # Path style (endpoint/bucket/key): R2 and MinIO endpoints need no DNS per bucket.
            s3={"addressing_style": "path"},
            # botocore >= 1.36 adds CRC32 checksum headers to every request by default,
            # which several S3-compatible stores reject; send them only where S3 needs them.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None

    def __repr__(self) -> str:
        return f"S3ObjectStorage(bucket={self.bucket!r}, endpoint_url={self.endpoint_url!r})"

    async def open(self) -> None:
        """Create the client (idempotent)."""
        if self._client is not None:
            return
        stack = contextlib.AsyncExitStack()
        self._client = await stack.enter_async_context(
            self._session.client("s3", endpoint_url=self.endpoint_url, config=self._config)
        )
        self._stack = stack

    async def close(self) -> None:
        """Close the client and its connection pool."""
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    @property
    def client(self) -> Any:
        """The open aioboto3 client (for tests and tooling)."""
        if self._client is None:
            raise RuntimeError("S3ObjectStorage is not open: use `async with` or open()")
        return self._client

    async def put(
        self, key: str, data: bytes, *, content_type: str, metadata: dict[str, str]
    ) -> None:
        """Upload (replace) one object with its content type and ASCII metadata."""
        validate_object_key(key)
        validate_metadata(metadata)
        try:
            await self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ContentType=content_type,
                Metadata=metadata,
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._error("put", key, exc) from exc
        log.debug("storage.put", backend="s3", key=key, size=len(data))

    async def signed_get_url(self, key: str, ttl_seconds: int) -> str:
        """A SigV4 presigned GET URL (``X-Amz-Expires`` = `ttl_seconds`); no network call."""
        if not 1 <= ttl_seconds <= MAX_PRESIGN_SECONDS:
            raise ValueError(f"ttl_seconds must be between 1 and {MAX_PRESIGN_SECONDS}")
        validate_object_key(key)
        try:
            url: str = await self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=ttl_seconds,
            )
        except BotoCoreError as exc:
            raise self._error("presign", key, exc) from exc
        return url

    async def signed_get_url_as_of(self, key: str, ttl_seconds: int, signed_at: datetime) -> str:
        """A presigned GET URL as if signed at `signed_at` (UTC): `bitloot storage check`
        signs one in the past to prove the store refuses it once expired, without waiting.

        botocore reads the signing time from `botocore.auth.get_current_datetime`, so it is
        swapped for this one call; nothing else signs meanwhile (presigning awaits nothing
        but the static credentials). Only the operator check calls this, never a server.
        """
        auth: Any = botocore.auth
        original = auth.get_current_datetime
        naive_utc = signed_at.astimezone(UTC).replace(tzinfo=None)  # what botocore returns
        auth.get_current_datetime = lambda *_, **__: naive_utc
        try:
            return await self.signed_get_url(key, ttl_seconds)
        finally:
            auth.get_current_datetime = original

    async def delete(self, key: str) -> None:
        """Delete one object (S3 reports success for a missing one too)."""
        validate_object_key(key)
        try:
            await self.client.delete_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            raise self._error("delete", key, exc) from exc

    async def exists(self, key: str) -> bool:
        """HEAD the object: True if present, False on 404, `StorageError` otherwise."""
        validate_object_key(key)
        try:
            await self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                return False
            raise self._error("exists", key, exc) from exc
        except BotoCoreError as exc:
            raise self._error("exists", key, exc) from exc
        return True

    async def check(self) -> None:
        """GET one byte of a canary key, so bad credentials, a missing bucket or an
        unreachable endpoint stop the process at start with a message that says which.

        An object operation, not HeadBucket: an R2 token scoped to objects ("Object Read &
        Write" on one bucket) may be refused bucket-level calls. A GET, not a HEAD: a HEAD's
        error has no body, so a missing bucket and a missing key would both be a bare 404;
        a GET says NoSuchKey (all is well: nothing is written) or NoSuchBucket.
        """
        try:
            response = await self.client.get_object(
                Bucket=self.bucket, Key=CHECK_KEY, Range="bytes=0-0"
            )
            await response["Body"].read()
        except ClientError as exc:
            if _code(exc) == "NoSuchKey":
                return
            raise self._error("check", None, exc) from exc
        except BotoCoreError as exc:
            raise self._error("check", None, exc) from exc

    def _error(self, operation: str, key: str | None, exc: Exception) -> StorageError:
        where = f"bucket {self.bucket!r} at {self.endpoint_url or 'AWS S3'}"
        subject = f"object {key!r} in {where}" if key else where
        if isinstance(exc, ClientError):
            code = _code(exc)
            if code in _NOT_FOUND and key is None:
                message = f"{where} does not exist (or is not visible to these credentials)"
            elif code in _DENIED:
                message = (
                    f"access to {subject} was refused ({code}): check "
                    "BITLOOT_S3_ACCESS_KEY_ID and BITLOOT_S3_SECRET_ACCESS_KEY"
                )
            else:
                message = f"{operation} of {subject} failed: {code}"
        elif isinstance(exc, UNREACHABLE):
            message = (
                f"cannot reach the S3 endpoint {self.endpoint_url or 'AWS S3'} "
                f"(check BITLOOT_S3_ENDPOINT_URL and the network): {type(exc).__name__}"
            )
        elif isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            message = (
                "S3 credentials are missing: set BITLOOT_S3_ACCESS_KEY_ID and "
                "BITLOOT_S3_SECRET_ACCESS_KEY"
            )
        else:
            message = f"{operation} of {subject} failed: {type(exc).__name__}"
        log.warning("storage.s3_error", operation=operation, key=key, error=message)
        return StorageError(message)


def _code(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    code = str(error.get("Code") or "")
    if not code:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = str(status or "unknown")
    return code
