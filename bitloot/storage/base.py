"""The object store interface, and the rules for object keys and metadata."""

from __future__ import annotations

import re
import uuid
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

# A key is slash-separated segments of safe characters; no segment may be "." or "..",
# so a key can never climb out of the local root or look different to S3 and to a disk.
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}")
_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_METADATA_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
MAX_KEY_LENGTH = 1024


class StorageError(Exception):
    """The object store failed or is misconfigured; the message is safe to show an operator."""


def validate_object_key(key: str) -> str:
    """Return `key` if it is a safe relative object key, else raise `ValueError`."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ValueError("object key must be 1 to 1024 characters")
    if not all(_SEGMENT.fullmatch(s) for s in key.split("/")):
        raise ValueError(f"unsafe object key {key!r}")
    return key


def object_key_for(order_id: str | uuid.UUID, key_id: str) -> str:
    """The object key of one sealed game key: ``orders/{orderId}/{keyId}.bin``.

    `order_id` must be a UUID (given as one or as text) and is written in canonical form;
    `key_id` may hold letters, digits, ``_``, ``.`` and ``-`` only, so neither can escape
    the order's folder.
    """
    try:
        canonical = str(order_id if isinstance(order_id, uuid.UUID) else uuid.UUID(order_id))
    except ValueError:
        raise ValueError("order id must be a UUID") from None
    if not _KEY_ID.fullmatch(key_id):
        raise ValueError(f"key id {key_id!r} has characters not allowed in an object key")
    return f"orders/{canonical}/{key_id}.bin"


def validate_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """Check object metadata: short ASCII names and values, and no personal data.

    S3 sends metadata as HTTP headers (ASCII only), and it is readable by anyone with
    bucket access, so an email address (anything with ``@``) is refused outright.
    """
    for name, value in metadata.items():
        if not _METADATA_NAME.fullmatch(name):
            raise ValueError(f"metadata name {name!r} must be lowercase letters, digits, '-'")
        if not value.isascii() or not value.isprintable() or len(value) > 256:
            raise ValueError(f"metadata {name!r} must be printable ASCII, at most 256 chars")
        if "@" in value:
            raise ValueError(f"metadata {name!r} looks like an email address; never store one")
    return metadata


class ObjectStorage(ABC):
    """Where sealed keys live: S3/R2 in production, the local disk by default.

    Use as ``async with storage:`` or call `open()` and `close()`; the backends keep
    their connections for their whole life rather than one per call.
    """

    async def open(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Acquire long-lived resources (clients, connection pools)."""

    async def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release what `open()` acquired; safe to call twice."""

    @abstractmethod
    async def put(
        self, key: str, data: bytes, *, content_type: str, metadata: dict[str, str]
    ) -> None:
        """Store `data` under `key`, replacing any previous object (so a retry is safe)."""

    @abstractmethod
    async def signed_get_url(self, key: str, ttl_seconds: int) -> str:
        """A URL anyone can GET for `ttl_seconds`, with no other credentials."""

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove the object; removing a missing object is not an error."""

    @abstractmethod
    async def exists(self, key: str) -> bool:
        """True when an object is stored under `key`."""

    @abstractmethod
    async def check(self) -> None:
        """Start-up check: raise `StorageError` naming the problem if the store is unusable."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
