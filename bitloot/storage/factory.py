"""Choose the object store from ``BITLOOT_STORAGE_URL``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from bitloot.storage.base import ObjectStorage, StorageError
from bitloot.storage.local import LocalObjectStorage
from bitloot.storage.s3 import S3ObjectStorage

# S3 bucket naming rules (R2's are the same or stricter).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def storage_from_url(
    url: str,
    *,
    public_url: str,
    signing_keys: Sequence[bytes],
    s3_endpoint_url: str | None = None,
    s3_access_key_id: str | None = None,
    s3_secret_access_key: str | None = None,
    s3_region: str = "auto",
) -> ObjectStorage:
    """Build (without opening) the backend that ``file:///path`` or ``s3://bucket`` names;
    `signing_keys` sign local URLs (the first signs, all verify; S3 presigns its own)."""
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme == "file":
        if not rest.strip("/"):
            raise StorageError("BITLOOT_STORAGE_URL file:// needs a directory, e.g. file:///srv/x")
        return LocalObjectStorage(
            _file_path(rest), public_url=public_url, signing_keys=signing_keys
        )
    if scheme == "s3":
        parts = urlsplit(url)
        if parts.path.strip("/") or parts.query or not _BUCKET.fullmatch(parts.netloc):
            raise StorageError(
                "BITLOOT_STORAGE_URL must be s3://bucket-name (a valid bucket name, no path)"
            )
        if bool(s3_access_key_id) != bool(s3_secret_access_key):
            raise StorageError(
                "set both BITLOOT_S3_ACCESS_KEY_ID and BITLOOT_S3_SECRET_ACCESS_KEY, or neither"
            )
        return S3ObjectStorage(
            parts.netloc,
            endpoint_url=s3_endpoint_url or None,
            access_key_id=s3_access_key_id or None,
            secret_access_key=s3_secret_access_key or None,
            region=s3_region or "auto",
        )
    raise StorageError("BITLOOT_STORAGE_URL must start with file:// or s3://")


def _file_path(rest: str) -> Path:
    # file:///abs/path -> /abs/path; file://./rel -> ./rel (the contract's default is
    # file://$BITLOOT_DATA_DIR/objects, and the data dir may be relative);
    # file://localhost/abs -> /abs.
    if rest.startswith("localhost/"):
        rest = rest[len("localhost") :]
    return Path(unquote(rest))


async def open_storage(
    url: str,
    *,
    public_url: str,
    signing_keys: Sequence[bytes],
    s3_endpoint_url: str | None = None,
    s3_access_key_id: str | None = None,
    s3_secret_access_key: str | None = None,
    s3_region: str = "auto",
) -> ObjectStorage:
    """Build and open the backend; the caller closes it (``await storage.close()``)."""
    storage = storage_from_url(
        url,
        public_url=public_url,
        signing_keys=signing_keys,
        s3_endpoint_url=s3_endpoint_url,
        s3_access_key_id=s3_access_key_id,
        s3_secret_access_key=s3_secret_access_key,
        s3_region=s3_region,
    )
    await storage.open()
    return storage
