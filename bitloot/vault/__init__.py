"""The key vault: envelope encryption of game keys and master key management."""

from bitloot.vault.crypto import (
    ALGORITHM,
    DataKey,
    MasterKeyRing,
    PlaintextKey,
    SealedKey,
    VaultError,
    WrappedKey,
    generate_master_key,
    open_blob,
    rewrap,
    seal_key,
    unwrap_data_key,
    wrap_data_key,
)

__all__ = [
    "ALGORITHM",
    "DataKey",
    "MasterKeyRing",
    "PlaintextKey",
    "SealedKey",
    "VaultError",
    "WrappedKey",
    "generate_master_key",
    "open_blob",
    "rewrap",
    "seal_key",
    "unwrap_data_key",
    "wrap_data_key",
]
