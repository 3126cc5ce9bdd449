"""Envelope encryption for game keys.

Each game key is sealed with its own random 256-bit data key (AES-256-GCM). The data key
is wrapped (encrypted) by a versioned master key from ``BITLOOT_MASTER_KEYS``. Two binary
formats, both starting with a version byte so they can evolve:

* blob (what the object store holds, what the browser decrypts):
  ``0x01 || nonce (12) || ciphertext || tag (16)``, additional data ``"{order_id}:{key_id}"``.
* wrapped data key (what the database holds):
  ``0x01 || nonce (12) || ciphertext (32) || tag (16)``, additional data
  ``"bitloot-dk:v1:{master_key_id}:{order_id}:{key_id}"``, so a wrapped key copied onto
  another row, or relabelled with another master key id, fails to unwrap.

Nothing here ever puts key material into a message, a repr or a log line.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
import uuid
from dataclasses import dataclass, field
from typing import NamedTuple, Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
BLOB_VERSION = 0x01
WRAP_VERSION = 0x01
ALGORITHM = "AES-256-GCM"

_WRAPPED_LEN = 1 + NONCE_BYTES + KEY_BYTES + TAG_BYTES
_WRAP_AAD_PREFIX = b"bitloot-dk:v1:"
# At most 32 characters, so a 32-byte key pasted where an id belongs (43+ base64
# characters) can never pass as an id and end up echoed in an error message.
_MASTER_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")

OrderId = str | uuid.UUID


class VaultError(Exception):
    """A sealing/unwrapping/configuration failure; the message never holds key material."""


class _Secret:
    """Bytes that must not leak through repr, str, f-strings or tracebacks."""

    __slots__ = ("_value",)
    _value: bytes

    def __init__(self, value: bytes) -> None:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"{type(self).__name__} takes bytes")
        self._value = bytes(value)

    def reveal(self) -> bytes:
        """Return the secret bytes; call only where they are about to be used."""
        return self._value

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<redacted>)"

    __str__ = __repr__

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Secret)
        return hmac.compare_digest(self._value, other._value)

    # Secrets are never dictionary or set members.
    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> str | tuple[object, ...]:
        # Pickling would copy the secret into queues and caches nobody audits.
        raise TypeError(f"{type(self).__name__} cannot be pickled")


class DataKey(_Secret):
    """A 256-bit AES-GCM data key for one game key."""

    __slots__ = ()

    def __init__(self, value: bytes) -> None:
        super().__init__(value)
        if len(self._value) != KEY_BYTES:
            raise VaultError(f"a data key must be {KEY_BYTES} bytes, got {len(self._value)}")

    @classmethod
    def generate(cls) -> Self:
        """Return a fresh random data key."""
        return cls(os.urandom(KEY_BYTES))

    def to_base64(self) -> str:
        """The standard base64 form that the download-link response hands to the browser."""
        return base64.b64encode(self._value).decode("ascii")


class PlaintextKey(_Secret):
    """A game key in clear (text or image bytes) while it is in memory."""

    __slots__ = ()


class MasterKeyRing:
    """The configured master keys: the first one wraps new data keys, all of them unwrap."""

    __slots__ = ("_aeads", "_derived", "_ids")

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise ValueError("a master key ring needs at least one key")
        self._ids = tuple(key_id for key_id, _ in keys)
        if len(set(self._ids)) != len(self._ids):
            raise ValueError("master key ids must be unique")
        for key_id, material in keys:
            if not _MASTER_KEY_ID.fullmatch(key_id):
                raise ValueError("invalid master key id")
            if len(material) != KEY_BYTES:
                raise ValueError(f"master key {key_id!r} must be {KEY_BYTES} bytes")
        self._aeads = {key_id: AESGCM(material) for key_id, material in keys}
        # Sub-keys for other purposes (local URL signing), derived up front so
        # the master key bytes themselves are not kept around beyond the AEAD objects.
        self._derived = {
            (key_id, purpose): _hkdf(material, purpose)
            for key_id, material in keys
            for purpose in DERIVED_PURPOSES
        }

    @classmethod
    def parse(cls, value: str) -> MasterKeyRing:
        """Parse ``BITLOOT_MASTER_KEYS`` (``id:base64,id:base64``; the first one encrypts).

        Errors name the entry by position and never repeat what was configured, except a
        key id that is already known to be well formed.
        """
        if not value or not value.strip():
            raise ValueError("BITLOOT_MASTER_KEYS is empty: expected 'id:base64key[,id:base64key]'")
        keys: list[tuple[str, bytes]] = []
        seen: set[str] = set()
        for position, raw in enumerate(value.split(","), start=1):
            entry = raw.strip()
            where = f"BITLOOT_MASTER_KEYS entry {position}"
            if not entry:
                raise ValueError(f"{where} is empty (a stray comma?)")
            key_id, colon, encoded = entry.partition(":")
            key_id = key_id.strip()
            if not colon:
                raise ValueError(f"{where} has no ':'; expected 'id:base64key'")
            if not _MASTER_KEY_ID.fullmatch(key_id):
                raise ValueError(
                    f"{where} has an invalid key id: use 1 to 32 letters, digits, '.', '_' "
                    "or '-', starting with a letter or digit (e.g. 'k2')"
                )
            if key_id in seen:
                raise ValueError(f"{where}: key id {key_id!r} appears more than once")
            material = _decode_master_key(encoded.strip(), f"{where} (id {key_id!r})")
            seen.add(key_id)
            keys.append((key_id, material))
        return cls(keys)

    @property
    def active_id(self) -> str:
        """The id of the key that wraps new data keys."""
        return self._ids[0]

    @property
    def ids(self) -> tuple[str, ...]:
        """All key ids, the active one first."""
        return self._ids

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._aeads

    def aead(self, key_id: str) -> AESGCM:
        """The cipher for one master key; `VaultError` when the ring does not hold it."""
        try:
            return self._aeads[key_id]
        except KeyError:
            raise VaultError(
                f"master key {key_id!r} is not in BITLOOT_MASTER_KEYS "
                f"(configured: {', '.join(self._ids)})"
            ) from None

    def derived_key(self, purpose: bytes, key_id: str | None = None) -> bytes:
        """A 32-byte key for `purpose` (one of DERIVED_PURPOSES) derived with HKDF from a
        master key (the active one by default); never the master key itself."""
        try:
            return self._derived[(key_id or self.active_id, purpose)]
        except KeyError:
            raise VaultError("no such master key or derived-key purpose") from None

    def derived_keys(self, purpose: bytes) -> list[bytes]:
        """The `purpose` key of every master key, the active one's first: sign with the
        first, accept any, so what was signed before a new key went first stays valid
        until the old key is removed."""
        return [self.derived_key(purpose, key_id) for key_id in self._ids]

    def __repr__(self) -> str:
        return f"MasterKeyRing(ids={list(self._ids)!r}, active={self.active_id!r})"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("MasterKeyRing cannot be pickled")


LOCAL_URL_PURPOSE = b"bitloot local object urls v1"
# The first release signed order tokens with a key derived for this purpose; kept only so
# that those tokens are accepted until they expire (bitloot.auth.legacy_order_jwt).
LEGACY_ORDER_TOKEN_PURPOSE = b"bitloot order tokens v1"
DERIVED_PURPOSES = (LOCAL_URL_PURPOSE, LEGACY_ORDER_TOKEN_PURPOSE)


def _hkdf(material: bytes, purpose: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(material)


def _decode_master_key(encoded: str, where: str) -> bytes:
    try:
        material = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        # `from None`: the decoder's exception would only add noise to the traceback.
        raise ValueError(f"{where}: the key is not valid standard base64") from None
    if len(material) != KEY_BYTES:
        raise ValueError(f"{where}: the key decodes to {len(material)} bytes, expected {KEY_BYTES}")
    return material


def generate_master_key(key_id: str = "k1") -> str:
    """Return a new ``id:base64`` entry for ``BITLOOT_MASTER_KEYS`` (demo and ops use)."""
    if not _MASTER_KEY_ID.fullmatch(key_id):
        raise ValueError(f"invalid master key id {key_id!r}")
    return f"{key_id}:{base64.b64encode(os.urandom(KEY_BYTES)).decode('ascii')}"


@dataclass(frozen=True, slots=True)
class SealedKey:
    """A sealed game key: what goes to the object store, the database, and the browser."""

    blob: bytes = field(repr=False)
    wrapped_data_key: bytes = field(repr=False)
    master_key_id: str
    data_key: DataKey


class WrappedKey(NamedTuple):
    """A wrapped data key and the id of the master key that wrapped it."""

    wrapped: bytes
    master_key_id: str


def blob_aad(order_id: OrderId, key_id: str) -> bytes:
    """The additional data bound into a blob: ``"{order_id}:{key_id}"`` in UTF-8."""
    return f"{order_id}:{key_id}".encode()


def wrap_aad(master_key_id: str, order_id: OrderId, key_id: str) -> bytes:
    """The additional data bound into a wrapped data key."""
    return _WRAP_AAD_PREFIX + f"{master_key_id}:{order_id}:{key_id}".encode()


def seal_key(
    plaintext: bytes | PlaintextKey,
    *,
    order_id: OrderId,
    key_id: str,
    ring: MasterKeyRing,
) -> SealedKey:
    """Encrypt one game key under a fresh data key, wrapped by the active master key."""
    clear = plaintext.reveal() if isinstance(plaintext, PlaintextKey) else bytes(plaintext)
    data_key = DataKey.generate()
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(data_key.reveal()).encrypt(nonce, clear, blob_aad(order_id, key_id))
    wrapped = wrap_data_key(data_key, order_id=order_id, key_id=key_id, ring=ring)
    return SealedKey(
        blob=bytes([BLOB_VERSION]) + nonce + ciphertext,
        wrapped_data_key=wrapped.wrapped,
        master_key_id=wrapped.master_key_id,
        data_key=data_key,
    )


def open_blob(blob: bytes, data_key: DataKey, *, order_id: OrderId, key_id: str) -> bytes:
    """Decrypt a blob exactly as a browser would; `VaultError` if anything does not match."""
    if len(blob) < 1 + NONCE_BYTES + TAG_BYTES or blob[0] != BLOB_VERSION:
        raise VaultError(f"not a version-{BLOB_VERSION} sealed key blob")
    nonce, ciphertext = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
    try:
        return AESGCM(data_key.reveal()).decrypt(nonce, ciphertext, blob_aad(order_id, key_id))
    except InvalidTag:
        raise VaultError(
            f"cannot open the sealed key for order {order_id} key {key_id!r}: wrong data key, "
            "another order/key, or altered ciphertext"
        ) from None


def wrap_data_key(
    data_key: DataKey, *, order_id: OrderId, key_id: str, ring: MasterKeyRing
) -> WrappedKey:
    """Wrap a data key under the ring's active master key."""
    master_key_id = ring.active_id
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = ring.aead(master_key_id).encrypt(
        nonce, data_key.reveal(), wrap_aad(master_key_id, order_id, key_id)
    )
    return WrappedKey(bytes([WRAP_VERSION]) + nonce + ciphertext, master_key_id)


def unwrap_data_key(
    wrapped: bytes,
    *,
    master_key_id: str,
    order_id: OrderId,
    key_id: str,
    ring: MasterKeyRing,
) -> DataKey:
    """Unwrap a stored data key; `VaultError` on a wrong key, a moved row or tampering."""
    aead = ring.aead(master_key_id)
    if len(wrapped) != _WRAPPED_LEN or wrapped[0] != WRAP_VERSION:
        raise VaultError(
            f"the wrapped data key for order {order_id} key {key_id!r} is not in the "
            f"version-{WRAP_VERSION} format"
        )
    nonce, ciphertext = wrapped[1 : 1 + NONCE_BYTES], wrapped[1 + NONCE_BYTES :]
    try:
        clear = aead.decrypt(nonce, ciphertext, wrap_aad(master_key_id, order_id, key_id))
    except InvalidTag:
        raise VaultError(
            f"cannot unwrap the data key for order {order_id} key {key_id!r} with master key "
            f"{master_key_id!r}: the configured key differs from the one that wrapped it, "
            "or the stored value was moved or altered"
        ) from None
    return DataKey(clear)


def rewrap(
    wrapped: bytes,
    *,
    master_key_id: str,
    order_id: OrderId,
    key_id: str,
    ring: MasterKeyRing,
) -> WrappedKey:
    """Re-wrap a stored data key under the active master key (the data key is unchanged)."""
    data_key = unwrap_data_key(
        wrapped, master_key_id=master_key_id, order_id=order_id, key_id=key_id, ring=ring
    )
    return wrap_data_key(data_key, order_id=order_id, key_id=key_id, ring=ring)
