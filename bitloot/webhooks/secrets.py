"""Endpoint signing secrets: made, wrapped by the master key, unwrapped to sign.

A secret is what Standard Webhooks calls it: `whsec_` and the base64 of 32 random bytes,
shown once (at `webhooks add` and `rotate-secret`) and stored only wrapped: the 12-byte
nonce and the AES-GCM ciphertext of the 32 bytes under the active master key, bound to
the endpoint id (associated data), so a wrapped secret copied to another endpoint does not
open. `bitloot keys rotate` re-wraps them under the newest master key like the data keys.
"""

from __future__ import annotations

import base64
import os
import uuid
from dataclasses import dataclass

from bitloot.vault.crypto import MasterKeyRing

PREFIX = "whsec_"
SECRET_BYTES = 32
NONCE_BYTES = 12


@dataclass(frozen=True, slots=True)
class WrappedSecret:
    """A secret as stored: `webhook_endpoint_secrets.wrapped` and `master_key_id`."""

    wrapped: bytes
    master_key_id: str


def new_secret() -> bytes:
    """32 random bytes: a new signing secret."""
    return os.urandom(SECRET_BYTES)


def to_whsec(secret: bytes) -> str:
    """The secret as the receiver configures it: `whsec_<base64>`."""
    return PREFIX + base64.b64encode(secret).decode("ascii")


def from_whsec(text: str) -> bytes:
    """The raw bytes of a `whsec_<base64>` secret (ValueError if it is not one)."""
    if not text.startswith(PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    raw = base64.b64decode(text[len(PREFIX) :], validate=True)
    if len(raw) != SECRET_BYTES:
        raise ValueError(f"a webhook secret is {SECRET_BYTES} bytes")
    return raw


def _aad(endpoint_id: uuid.UUID) -> bytes:
    return b"bitloot-webhook-secret:" + str(endpoint_id).encode("ascii")


def wrap(ring: MasterKeyRing, endpoint_id: uuid.UUID, secret: bytes) -> WrappedSecret:
    """Wrap `secret` under the ring's active master key, bound to the endpoint."""
    nonce = os.urandom(NONCE_BYTES)
    key_id = ring.active_id
    sealed = ring.aead(key_id).encrypt(nonce, secret, _aad(endpoint_id))
    return WrappedSecret(wrapped=nonce + sealed, master_key_id=key_id)


def unwrap(ring: MasterKeyRing, endpoint_id: uuid.UUID, stored: WrappedSecret) -> bytes:
    """The secret's bytes (`VaultError` if its master key is not configured;
    `cryptography.exceptions.InvalidTag` if it was tampered with or moved)."""
    nonce, sealed = stored.wrapped[:NONCE_BYTES], stored.wrapped[NONCE_BYTES:]
    return ring.aead(stored.master_key_id).decrypt(nonce, sealed, _aad(endpoint_id))


def rewrap(ring: MasterKeyRing, endpoint_id: uuid.UUID, stored: WrappedSecret) -> WrappedSecret:
    """The same secret wrapped under the active master key (for `bitloot keys rotate`)."""
    return wrap(ring, endpoint_id, unwrap(ring, endpoint_id, stored))
