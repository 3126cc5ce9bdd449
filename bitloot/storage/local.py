"""Objects on the local disk, served through HMAC-signed, expiring URLs.

The default backend, for one-machine installs, the demo and tests. A signed URL is
``{public_url}/objects/{key}?expires={unix}&sig={hex}`` where ``sig`` is
``HMAC-SHA256(signing_key, f"{key}\\n{expires}")``: the URL itself is the capability, as
with an S3 presigned URL, and `local_objects_routes` serves it from `bitloot serve`.

`signing_keys` is a list, like the master keys they derive from: the first signs, every
one verifies, so a URL signed just before a new master key went first keeps working
until the old key is removed from `BITLOOT_MASTER_KEYS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import quote, urlencode

import structlog
from aiohttp import web

from bitloot.files import TEMP_PREFIX, write_atomically
from bitloot.storage.base import (
    ObjectStorage,
    StorageError,
    validate_metadata,
    validate_object_key,
)

log = structlog.get_logger(__name__)

_SIG = re.compile(r"[0-9a-f]{64}")
_EXPIRES = re.compile(r"[0-9]{1,12}")


class LocalObjectStorage(ObjectStorage):
    """A directory of objects; writes are atomic and durable (fsync, rename, fsync dir)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        public_url: str,
        signing_keys: Sequence[bytes],
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(signing_keys, bytes | bytearray) or not signing_keys:
            raise ValueError("the local storage needs a list of signing keys (the first signs)")
        if any(len(key) < 32 for key in signing_keys):
            raise ValueError("the local storage signing key must be at least 32 bytes")
        self.root = Path(root).absolute()
        self._public_url = public_url.rstrip("/")
        self._signing_keys = tuple(bytes(key) for key in signing_keys)
        self._clock = clock

    def __repr__(self) -> str:
        return f"LocalObjectStorage(root={str(self.root)!r})"

    def path_of(self, key: str) -> Path:
        """The file that holds `key` (the key is validated, so it stays under the root)."""
        return self.root / validate_object_key(key)

    async def put(
        self, key: str, data: bytes, *, content_type: str, metadata: dict[str, str]
    ) -> None:
        """Write atomically; metadata is validated but not kept (the database holds it)."""
        validate_metadata(metadata)
        path = self.path_of(key)
        try:
            await asyncio.to_thread(write_atomically, path, data)
        except OSError as exc:
            raise StorageError(f"cannot write object {key!r} under {self.root}: {exc}") from exc
        log.debug("storage.put", backend="local", key=key, size=len(data))

    async def read(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is none (or the key is not valid)."""
        try:
            path = self.path_of(key)
        except ValueError:
            return None
        try:
            return await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    async def signed_get_url(self, key: str, ttl_seconds: int) -> str:
        """A URL of this server that serves the object until now + `ttl_seconds`."""
        if ttl_seconds < 1:
            raise ValueError("ttl_seconds must be positive")
        validate_object_key(key)
        expires = int(self._clock()) + ttl_seconds
        query = urlencode(
            {"expires": expires, "sig": self._sign(self._signing_keys[0], key, expires)}
        )
        return f"{self._public_url}/objects/{quote(key, safe='/')}?{query}"

    def verify_signed_request(
        self, key: str, expires: str | int, sig: str, now: float | None = None
    ) -> bool:
        """True only for an unexpired URL signed for exactly this key by any of the signing
        keys (constant-time)."""
        expires_text = str(expires)
        if not _EXPIRES.fullmatch(expires_text) or not _SIG.fullmatch(sig):
            return False
        current = self._clock() if now is None else now
        # Every key is compared, without stopping at a match, and before looking at the
        # clock result, so timing says nothing about the signature.
        matches = [
            hmac.compare_digest(self._sign(signing_key, key, int(expires_text)), sig)
            for signing_key in self._signing_keys
        ]
        return any(matches) and current < int(expires_text)

    @staticmethod
    def _sign(signing_key: bytes, key: str, expires: int) -> str:
        message = f"{key}\n{expires}".encode()
        return hmac.new(signing_key, message, hashlib.sha256).hexdigest()

    async def delete(self, key: str) -> None:
        """Remove the object if present."""
        path = self.path_of(key)
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(path.unlink)

    async def exists(self, key: str) -> bool:
        """True when the object's file exists."""
        return await asyncio.to_thread(self.path_of(key).is_file)

    async def check(self) -> None:
        """Create the root if needed and prove it is writable."""
        try:
            await asyncio.to_thread(_check_writable, self.root)
        except OSError as exc:
            raise StorageError(
                f"local object storage {self.root} is not usable: {exc.strerror or exc}"
            ) from exc


def _check_writable(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=root, prefix=TEMP_PREFIX)
    os.close(fd)
    os.unlink(tmp)


def _problem(status: int, title: str, detail: str) -> web.Response:
    return web.json_response(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status=status,
        content_type="application/problem+json",
        headers={"Cache-Control": "no-store", "Access-Control-Allow-Origin": "*"},
    )


def local_objects_routes(storage: LocalObjectStorage) -> list[web.RouteDef]:
    """The GET (and HEAD) route that serves signed URLs of `storage`."""

    async def get_object(request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        query = request.query
        # The signature is checked first, so an unsigned request learns nothing, not even
        # whether the object exists.
        if not storage.verify_signed_request(key, query.get("expires", ""), query.get("sig", "")):
            return _problem(403, "Forbidden", "The link is invalid or has expired.")
        data = await storage.read(key)
        if data is None:
            return _problem(404, "Not Found", "There is no object at this link.")
        return web.Response(
            body=data,
            content_type="application/octet-stream",
            headers={
                "Cache-Control": "private, no-store",
                # The URL is the capability, so any origin may fetch it (the key page may
                # live on another host than the API).
                "Access-Control-Allow-Origin": "*",
                "X-Content-Type-Options": "nosniff",
            },
        )

    return [web.get("/objects/{key:.+}", get_object)]
