"""The local-disk backend and its signed-URL route, served by a real aiohttp server."""

from __future__ import annotations

import os
import socket
import stat
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web

from bitloot.storage import (
    LocalObjectStorage,
    StorageError,
    local_objects_routes,
    object_key_for,
    open_storage,
)

SIGNING_KEY = bytes(range(32))
NOW = 1_800_000_000.0


class Served:
    """A storage, the base URL it signs for, and an HTTP client for that server."""

    def __init__(self, storage: LocalObjectStorage, http: aiohttp.ClientSession) -> None:
        self.storage = storage
        self.http = http

    def signer(self, clock: float) -> LocalObjectStorage:
        """Another view of the same store, signing as if it were `clock` now."""
        return LocalObjectStorage(
            self.storage.root,
            public_url=self.storage._public_url,
            signing_keys=[SIGNING_KEY],
            clock=lambda: clock,
        )


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    storage = LocalObjectStorage(
        tmp_path / "objects",
        public_url=f"http://127.0.0.1:{port}/",
        signing_keys=[SIGNING_KEY],
        clock=lambda: NOW,
    )
    app = web.Application()
    app.add_routes(local_objects_routes(storage))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        async with aiohttp.ClientSession() as http:
            yield Served(storage, http)
    finally:
        await runner.cleanup()


def a_key() -> str:
    return object_key_for(uuid.uuid4(), "kg-1")


async def put(storage: LocalObjectStorage, key: str, data: bytes) -> None:
    await storage.put(key, data, content_type="text/plain", metadata={"order-id": "x"})


async def test_valid_url_serves_the_bytes(served: Served) -> None:
    key = a_key()
    await put(served.storage, key, b"\x01sealed-bytes")
    url = await served.storage.signed_get_url(key, 900)

    async with served.http.get(url) as response:
        assert response.status == 200
        assert await response.read() == b"\x01sealed-bytes"
        assert response.headers["Content-Type"] == "application/octet-stream"
        assert response.headers["Cache-Control"] == "private, no-store"
        assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert parse_qs(urlsplit(url).query)["expires"] == [str(int(NOW) + 900)]


async def test_head_is_allowed(served: Served) -> None:
    key = a_key()
    await put(served.storage, key, b"abc")
    async with served.http.head(await served.storage.signed_get_url(key, 60)) as response:
        assert response.status == 200
        assert response.headers["Content-Length"] == "3"


async def test_expired_url_is_forbidden(served: Served) -> None:
    key = a_key()
    await put(served.storage, key, b"abc")
    # Signed an hour ago for ten minutes.
    url = await served.signer(NOW - 3600).signed_get_url(key, 600)
    async with served.http.get(url) as response:
        assert response.status == 403
        assert response.content_type == "application/problem+json"
        problem = await response.json(content_type=None)
        assert problem["status"] == 403 and problem["title"] == "Forbidden"


async def test_url_is_valid_until_the_second_it_expires(served: Served) -> None:
    url = await served.storage.signed_get_url("orders/a/b.bin", 10)
    query = parse_qs(urlsplit(url).query)
    expires, sig = query["expires"][0], query["sig"][0]
    verify = served.storage.verify_signed_request
    assert verify("orders/a/b.bin", expires, sig, now=NOW + 9.999)
    assert not verify("orders/a/b.bin", expires, sig, now=NOW + 10)


async def test_tampered_signature_is_forbidden(served: Served) -> None:
    key = a_key()
    await put(served.storage, key, b"abc")
    url = await served.storage.signed_get_url(key, 900)
    sig = parse_qs(urlsplit(url).query)["sig"][0]
    flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
    async with served.http.get(url.replace(sig, flipped)) as response:
        assert response.status == 403


async def test_extended_expiry_is_forbidden(served: Served) -> None:
    key = a_key()
    await put(served.storage, key, b"abc")
    url = await served.storage.signed_get_url(key, 900)
    longer = url.replace(f"expires={int(NOW) + 900}", f"expires={int(NOW) + 90000}")
    async with served.http.get(longer) as response:
        assert response.status == 403


async def test_signature_for_another_path_is_forbidden(served: Served) -> None:
    mine, theirs = a_key(), a_key()
    await put(served.storage, mine, b"mine")
    await put(served.storage, theirs, b"theirs")
    url = await served.storage.signed_get_url(mine, 900)
    async with served.http.get(url.replace(mine, theirs)) as response:
        assert response.status == 403


async def test_unsigned_and_traversal_requests_are_forbidden(served: Served) -> None:
    base = served.storage._public_url
    for path in ("/objects/orders/x/y.bin", "/objects/..%2F..%2Fetc%2Fpasswd?expires=1&sig=00"):
        async with served.http.get(base + path) as response:
            assert response.status == 403


async def test_missing_object_is_not_found(served: Served) -> None:
    url = await served.storage.signed_get_url(a_key(), 900)
    async with served.http.get(url) as response:
        assert response.status == 404
        assert response.content_type == "application/problem+json"


async def test_rewrite_overwrites_and_leaves_no_temp_files(served: Served) -> None:
    key = a_key()
    await put(served.storage, key, b"first")
    await put(served.storage, key, b"second")
    path = served.storage.path_of(key)
    assert path.read_bytes() == b"second"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["kg-1.bin"]


async def test_failed_write_keeps_the_old_object_and_no_temp_file(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = a_key()
    await put(served.storage, key, b"old")

    def disk_full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(StorageError, match="No space left"):
        await put(served.storage, key, b"new")
    monkeypatch.undo()
    path = served.storage.path_of(key)
    assert path.read_bytes() == b"old"
    assert [p.name for p in path.parent.iterdir()] == ["kg-1.bin"]


async def test_exists_and_delete(served: Served) -> None:
    key = a_key()
    assert not await served.storage.exists(key)
    await put(served.storage, key, b"x")
    assert await served.storage.exists(key)
    await served.storage.delete(key)
    await served.storage.delete(key)
    assert not await served.storage.exists(key)


async def test_check_creates_the_directory(tmp_path: Path) -> None:
    storage = LocalObjectStorage(
        tmp_path / "a" / "b", public_url="http://x", signing_keys=[SIGNING_KEY]
    )
    await storage.check()
    assert (tmp_path / "a" / "b").is_dir()
    assert list((tmp_path / "a" / "b").iterdir()) == []


async def test_check_fails_clearly_when_the_root_is_unusable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    storage = LocalObjectStorage(
        tmp_path / "file" / "objects", public_url="http://x", signing_keys=[SIGNING_KEY]
    )
    with pytest.raises(StorageError, match="is not usable"):
        await storage.check()


@pytest.mark.parametrize(
    "key", ["", "/etc/passwd", "orders/../x", "orders/./x", "a//b", ".tmp-x", "a\\b", "a\x00b"]
)
async def test_unsafe_keys_are_refused(served: Served, key: str) -> None:
    with pytest.raises(ValueError):
        await put(served.storage, key, b"x")
    with pytest.raises(ValueError):
        await served.storage.signed_get_url(key, 60)


def test_object_key_is_canonical_and_cannot_escape() -> None:
    order_id = uuid.uuid4()
    assert object_key_for(str(order_id).upper(), "5f3c-ab_1") == f"orders/{order_id}/5f3c-ab_1.bin"
    for bad_key_id in ("../x", "a/b", "", ".hidden", "x" * 200):
        with pytest.raises(ValueError):
            object_key_for(order_id, bad_key_id)
    with pytest.raises(ValueError, match="UUID"):
        object_key_for("../../etc", "k")


def test_short_signing_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        LocalObjectStorage(tmp_path, public_url="http://x", signing_keys=[b"short"])
    for nothing in ([], SIGNING_KEY):  # a bare key is not a list of keys
        with pytest.raises(ValueError, match="list of signing keys"):
            LocalObjectStorage(tmp_path, public_url="http://x", signing_keys=nothing)


async def test_urls_survive_a_master_key_rotation(tmp_path: Path) -> None:
    """Signed with the ring's first key, accepted with any: a URL issued under k1 still
    opens once k2 went first, and stops only when k1 is removed."""
    from bitloot.vault.crypto import LOCAL_URL_PURPOSE, MasterKeyRing, generate_master_key

    k1, k2 = generate_master_key("k1"), generate_master_key("k2")

    def store(keys: str) -> LocalObjectStorage:
        ring = MasterKeyRing.parse(keys)
        return LocalObjectStorage(
            tmp_path,
            public_url="http://x",
            signing_keys=ring.derived_keys(LOCAL_URL_PURPOSE),
            clock=lambda: NOW,
        )

    def query(url: str) -> tuple[str, str]:
        params = parse_qs(urlsplit(url).query)
        return params["expires"][0], params["sig"][0]

    key = a_key()
    before, during, after = store(k1), store(f"{k2},{k1}"), store(k2)
    old_url = query(await before.signed_get_url(key, 60))
    new_url = query(await during.signed_get_url(key, 60))
    assert new_url != old_url  # k2 signs once it is first
    assert during.verify_signed_request(key, *old_url)
    assert during.verify_signed_request(key, *new_url)
    assert before.verify_signed_request(key, *old_url)
    assert not before.verify_signed_request(key, *new_url)  # a process that lacks k2
    assert after.verify_signed_request(key, *new_url)
    assert not after.verify_signed_request(key, *old_url)  # k1 removed: its URLs end


async def test_open_storage_picks_the_local_backend(tmp_path: Path) -> None:
    storage = await open_storage(
        f"file://{tmp_path}/objects", public_url="http://x", signing_keys=[SIGNING_KEY]
    )
    assert isinstance(storage, LocalObjectStorage)
    assert storage.root == tmp_path / "objects"
    await storage.close()


def test_relative_file_url_is_relative_to_the_working_directory(tmp_path: Path) -> None:
    from bitloot.storage import storage_from_url

    storage = storage_from_url(
        "file://./.bitloot/objects", public_url="http://x", signing_keys=[SIGNING_KEY]
    )
    assert isinstance(storage, LocalObjectStorage)
    assert storage.root == Path.cwd() / ".bitloot" / "objects"
