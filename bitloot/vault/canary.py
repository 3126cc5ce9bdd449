"""Start-up proof that the configured master keys are the ones that wrote the data.

A mistyped or swapped master key would otherwise go unnoticed until a customer's reveal
fails (or, worse, new keys would be wrapped under a key nobody else has). So each master
key id gets a *canary*: a known value wrapped under that key and stored in
`vault_canaries`. At start every configured key must open its canary; a configured key
without one is tried on one stored data key instead; and every master key id that stored
data keys (or webhook signing secrets, `webhook_endpoint_secrets`) still need must be
configured.
"""

from __future__ import annotations

import os

import structlog
from cryptography.exceptions import InvalidTag

from bitloot.vault import repository
from bitloot.vault.crypto import (
    NONCE_BYTES,
    WRAP_VERSION,
    MasterKeyRing,
    VaultError,
    unwrap_data_key,
)
from bitloot.vault.repository import Conn

log = structlog.get_logger(__name__)

_CANARY_PLAINTEXT = b"bitloot master key canary v1"
_CANARY_AAD_PREFIX = b"bitloot-canary:v1:"


def make_canary(ring: MasterKeyRing, master_key_id: str) -> bytes:
    """Wrap the canary value under one master key (``version || nonce || ct+tag``)."""
    nonce = os.urandom(NONCE_BYTES)
    aad = _CANARY_AAD_PREFIX + master_key_id.encode()
    return (
        bytes([WRAP_VERSION])
        + nonce
        + ring.aead(master_key_id).encrypt(nonce, _CANARY_PLAINTEXT, aad)
    )


def canary_matches(ring: MasterKeyRing, master_key_id: str, wrapped: bytes) -> bool:
    """True when the ring's key of that id opens the stored canary."""
    if len(wrapped) <= 1 + NONCE_BYTES or wrapped[0] != WRAP_VERSION:
        return False
    nonce, ciphertext = wrapped[1 : 1 + NONCE_BYTES], wrapped[1 + NONCE_BYTES :]
    aad = _CANARY_AAD_PREFIX + master_key_id.encode()
    try:
        return ring.aead(master_key_id).decrypt(nonce, ciphertext, aad) == _CANARY_PLAINTEXT
    except InvalidTag:
        return False


def _mismatch(master_key_id: str, evidence: str) -> VaultError:
    return VaultError(
        f"master key {master_key_id!r} does not match the key that wrote {evidence}; "
        f"check BITLOOT_MASTER_KEYS: the id {master_key_id!r} must always name the same "
        "32 bytes (a new key needs a new id)"
    )


async def verify_canaries(conn: Conn, ring: MasterKeyRing) -> set[str]:
    """Check every stored canary of a configured key; return the ids that have one."""
    stored = await repository.canaries(conn, ring.ids)
    for master_key_id in ring.ids:
        wrapped = stored.get(master_key_id)
        if wrapped is not None and not canary_matches(ring, master_key_id, wrapped):
            raise _mismatch(master_key_id, "the canary in vault_canaries")
    return set(stored)


async def _verify_against_data(conn: Conn, ring: MasterKeyRing, master_key_id: str) -> None:
    row = await repository.sample_wrapped_key(conn, master_key_id)
    if row is None:
        return
    try:
        unwrap_data_key(
            row.wrapped_data_key,
            master_key_id=master_key_id,
            order_id=row.order_id,
            key_id=row.key_id,
            ring=ring,
        )
    except VaultError:
        raise _mismatch(master_key_id, f"the stored data key of row {row.id}") from None


async def _require_configured_ids(conn: Conn, ring: MasterKeyRing) -> None:
    missing = [i for i in await repository.master_key_ids_in_use(conn) if i not in ring]
    if not missing:
        return
    counts = await repository.count_by_master_key(conn, missing)
    detail = ", ".join(f"{counts.get(i, 0)} by {i!r}" for i in missing)
    raise VaultError(
        f"stored data keys or webhook secrets are wrapped by master keys that "
        f"BITLOOT_MASTER_KEYS does not contain ({detail}); add those keys back to the list, "
        "after the active one"
    )


async def ensure_active_canary(conn: Conn, ring: MasterKeyRing) -> bool:
    """Give the active key a canary if it has none; True when one was written now.

    The canary is re-read after the insert, so if another process raced us with a
    different key under the same id, one of the two fails here.
    """
    active = ring.active_id
    created = await repository.insert_canary(conn, active, make_canary(ring, active))
    stored = (await repository.canaries(conn, [active])).get(active)
    if stored is None or not canary_matches(ring, active, stored):
        raise _mismatch(active, "the canary in vault_canaries")
    if created:
        log.info("vault.canary_created", master_key_id=active)
    return created


async def check_master_keys(conn: Conn, ring: MasterKeyRing) -> None:
    """Fail fast (`VaultError`) unless the configured master keys fit the stored data.

    Run at server and worker start, before anything is sealed or unwrapped.
    """
    with_canary = await verify_canaries(conn, ring)
    for master_key_id in ring.ids:
        if master_key_id not in with_canary:
            await _verify_against_data(conn, ring, master_key_id)
    await _require_configured_ids(conn, ring)
    await ensure_active_canary(conn, ring)
    log.info("vault.master_keys_checked", active=ring.active_id, ids=list(ring.ids))
