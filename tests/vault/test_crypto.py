"""Envelope encryption: formats, bindings, and secrets that never show."""

from __future__ import annotations

import base64
import pickle
import uuid

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bitloot.vault import (
    DataKey,
    MasterKeyRing,
    PlaintextKey,
    VaultError,
    generate_master_key,
    open_blob,
    rewrap,
    seal_key,
    unwrap_data_key,
)

K1 = generate_master_key("k1")
K2 = generate_master_key("k2")
GAME_KEY = b"ABCDE-FGHIJ-KLMNO"


def material(entry: str) -> str:
    return entry.partition(":")[2]


@pytest.fixture
def order_id() -> uuid.UUID:
    return uuid.uuid4()


def test_seal_then_unwrap_and_open_round_trips(order_id: uuid.UUID) -> None:
    ring = MasterKeyRing.parse(K1)
    sealed = seal_key(GAME_KEY, order_id=order_id, key_id="key-1", ring=ring)
    assert sealed.master_key_id == "k1"
    data_key = unwrap_data_key(
        sealed.wrapped_data_key, master_key_id="k1", order_id=order_id, key_id="key-1", ring=ring
    )
    assert data_key == sealed.data_key
    assert open_blob(sealed.blob, data_key, order_id=order_id, key_id="key-1") == GAME_KEY


def test_blob_is_the_documented_format_a_browser_can_decrypt(order_id: uuid.UUID) -> None:
    sealed = seal_key(GAME_KEY, order_id=order_id, key_id="k-9", ring=MasterKeyRing.parse(K1))
    # What WebCrypto does with the download-link response: base64 key, AAD "{order}:{key}".
    raw_key = base64.b64decode(sealed.data_key.to_base64())
    assert sealed.blob[0] == 0x01
    assert len(sealed.blob) == 1 + 12 + len(GAME_KEY) + 16
    nonce, ciphertext = sealed.blob[1:13], sealed.blob[13:]
    aad = f"{order_id}:k-9".encode()
    assert AESGCM(raw_key).decrypt(nonce, ciphertext, aad) == GAME_KEY


def test_each_seal_uses_a_fresh_data_key_and_nonce(order_id: uuid.UUID) -> None:
    ring = MasterKeyRing.parse(K1)
    a = seal_key(GAME_KEY, order_id=order_id, key_id="x", ring=ring)
    b = seal_key(GAME_KEY, order_id=order_id, key_id="x", ring=ring)
    assert a.data_key != b.data_key
    assert a.blob[1:13] != b.blob[1:13]
    assert a.wrapped_data_key != b.wrapped_data_key


def test_blob_never_contains_the_plaintext(order_id: uuid.UUID) -> None:
    sealed = seal_key(GAME_KEY, order_id=order_id, key_id="x", ring=MasterKeyRing.parse(K1))
    assert GAME_KEY not in sealed.blob
    assert GAME_KEY not in sealed.wrapped_data_key
    assert sealed.data_key.reveal() not in sealed.wrapped_data_key


def test_blob_of_another_order_does_not_open(order_id: uuid.UUID) -> None:
    sealed = seal_key(GAME_KEY, order_id=order_id, key_id="x", ring=MasterKeyRing.parse(K1))
    with pytest.raises(VaultError, match="cannot open"):
        open_blob(sealed.blob, sealed.data_key, order_id=uuid.uuid4(), key_id="x")
    with pytest.raises(VaultError):
        open_blob(sealed.blob, sealed.data_key, order_id=order_id, key_id="y")


def test_wrapped_key_moved_to_another_row_does_not_unwrap(order_id: uuid.UUID) -> None:
    ring = MasterKeyRing.parse(K1)
    sealed = seal_key(GAME_KEY, order_id=order_id, key_id="x", ring=ring)
    with pytest.raises(VaultError, match="cannot unwrap"):
        unwrap_data_key(
            sealed.wrapped_data_key,
            master_key_id="k1",
            order_id=uuid.uuid4(),
            key_id="x",
            ring=ring,
        )


def test_tampered_ciphertext_fails(order_id: uuid.UUID) -> None:
    ring = MasterKeyRing.parse(K1)
    sealed = seal_key(GAME_KEY, order_id=order_id, key_id="x", ring=ring)
    blob = bytearray(sealed.blob)
    blob[20] ^= 0x01
    with pytest.raises(VaultError):
        open_blob(bytes(blob), sealed.data_key, order_id=order_id, key_id="x")
    wrapped = bytearray(sealed.wrapped_data_key)
    wrapped[-1] ^= 0x80
    with pytest.raises(VaultError):
        unwrap_data_key(
            bytes(wrapped), master_key_id="k1", order_id=order_id, key_id="x", ring=ring
        )


def test_wrong_master_key_under_the_same_id_fails(order_id: uuid.UUID) -> None:
    sealed = seal_key(GAME_KEY, order_id=order_id, key_id="x", ring=MasterKeyRing.parse(K1))
    impostor = MasterKeyRing.parse("k1:" + material(K2))
    with pytest.raises(VaultError, match="'k1'") as info:
        unwrap_data_key(
            sealed.wrapped_data_key,
            master_key_id="k1",
            order_id=order_id,
            key_id="x",
            ring=impostor,
        )
    assert material(K1) not in str(info.value) and material(K2) not in str(info.value)


def test_unknown_master_key_id_is_named(order_id: uuid.UUID) -> None:
    sealed = seal_key(GAME_KEY, order_id=order_id, key_id="x", ring=MasterKeyRing.parse(K1))
    with pytest.raises(VaultError, match="'k1' is not in BITLOOT_MASTER_KEYS"):
        unwrap_data_key(
            sealed.wrapped_data_key,
            master_key_id="k1",
            order_id=order_id,
            key_id="x",
            ring=MasterKeyRing.parse(K2),
        )


def test_rewrap_then_unwrap_with_only_the_new_key(order_id: uuid.UUID) -> None:
    sealed = seal_key(GAME_KEY, order_id=order_id, key_id="x", ring=MasterKeyRing.parse(K1))
    both = MasterKeyRing.parse(f"{K2},{K1}")
    rewrapped = rewrap(
        sealed.wrapped_data_key, master_key_id="k1", order_id=order_id, key_id="x", ring=both
    )
    assert rewrapped.master_key_id == "k2"
    data_key = unwrap_data_key(
        rewrapped.wrapped,
        master_key_id="k2",
        order_id=order_id,
        key_id="x",
        ring=MasterKeyRing.parse(K2),
    )
    # The blob in storage is untouched and still opens.
    assert open_blob(sealed.blob, data_key, order_id=order_id, key_id="x") == GAME_KEY


def test_relabelled_master_key_id_does_not_unwrap(order_id: uuid.UUID) -> None:
    # Same key bytes under two ids: the id is bound into the additional data.
    twin = MasterKeyRing.parse(f"{K1},k1b:{material(K1)}")
    sealed = seal_key(GAME_KEY, order_id=order_id, key_id="x", ring=twin)
    with pytest.raises(VaultError):
        unwrap_data_key(
            sealed.wrapped_data_key, master_key_id="k1b", order_id=order_id, key_id="x", ring=twin
        )


def test_secrets_hide_in_repr_str_and_formatting(order_id: uuid.UUID) -> None:
    ring = MasterKeyRing.parse(f"{K1},{K2}")
    sealed = seal_key(PlaintextKey(GAME_KEY), order_id=order_id, key_id="x", ring=ring)
    raw_key = sealed.data_key.reveal()
    shown = " ".join(
        [
            repr(sealed),
            str(sealed),
            repr(sealed.data_key),
            f"{sealed.data_key}",
            repr(PlaintextKey(GAME_KEY)),
            str(PlaintextKey(GAME_KEY)),
            repr(ring),
            str(ring),
        ]
    )
    assert "DataKey(<redacted>)" in shown and "PlaintextKey(<redacted>)" in shown
    for secret in (GAME_KEY.decode(), material(K1), material(K2), raw_key.hex(), repr(raw_key)):
        assert secret not in shown
    assert "k1" in repr(ring)


def test_secrets_refuse_pickling_and_hashing() -> None:
    with pytest.raises(TypeError):
        pickle.dumps(DataKey.generate())
    with pytest.raises(TypeError):
        pickle.dumps(MasterKeyRing.parse(K1))
    with pytest.raises(TypeError):
        hash(PlaintextKey(b"x"))


def test_ring_first_key_encrypts_all_decrypt() -> None:
    ring = MasterKeyRing.parse(f" {K2} , {K1} ")
    assert ring.active_id == "k2"
    assert ring.ids == ("k2", "k1")
    assert "k1" in ring and "k3" not in ring


def test_generate_master_key_is_a_valid_entry() -> None:
    entry = generate_master_key("prod-2025.1")
    assert MasterKeyRing.parse(entry).active_id == "prod-2025.1"
    assert len(base64.b64decode(material(entry))) == 32
    assert generate_master_key() != generate_master_key()


RING_ERRORS = [
    ("", "is empty"),
    ("   ", "is empty"),
    (f"{K1},", "entry 2 is empty"),
    (material(K1), "entry 1 has no ':'"),
    (f"{material(K1)}:k1", "entry 1 has an invalid key id"),
    (f"bad id:{material(K1)}", "entry 1 has an invalid key id"),
    (f"{K1},k2:{material(K1)[:-4]}!!!!", "entry 2 (id 'k2'): the key is not valid"),
    (f"k1:{base64.b64encode(b'x' * 16).decode()}", "decodes to 16 bytes, expected 32"),
    (f"{K1},k1:{material(K2)}", "'k1' appears more than once"),
]


@pytest.mark.parametrize(
    ("value", "message"),
    RING_ERRORS,
    # Named by the message, not the (random) key material: pytest-xdist workers must
    # collect the same ids.
    ids=[message for _, message in RING_ERRORS],
)
def test_ring_parse_errors_name_the_problem_without_key_material(value: str, message: str) -> None:
    with pytest.raises(ValueError, match="BITLOOT_MASTER_KEYS") as info:
        MasterKeyRing.parse(value)
    text = str(info.value)
    assert message in text
    for secret in (material(K1), material(K2), material(K1)[:-4]):
        assert secret not in text
    assert info.value.__cause__ is None
