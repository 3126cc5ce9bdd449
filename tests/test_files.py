"""`bitloot.files.write_atomically`: whole or not at all, private, durable."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from bitloot.files import TEMP_PREFIX, write_atomically


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that would let anyone read a file created with the default mode."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_writes_the_bytes_private_by_default(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "secret.json"
    write_atomically(path, b'{"a": 1}')
    assert path.read_bytes() == b'{"a": 1}'
    assert mode_of(path) == 0o600
    assert os.listdir(tmp_path) == ["secret.json"]


def test_the_mode_is_exactly_the_one_asked(tmp_path: Path) -> None:
    previous = os.umask(0o077)  # would strip group and other bits from an open() mode
    try:
        write_atomically(tmp_path / "shared", b"x", mode=0o644)
    finally:
        os.umask(previous)
    assert mode_of(tmp_path / "shared") == 0o644


def test_a_missing_folder_is_created_private(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "a" / "b" / "file.eml"
    write_atomically(path, b"mail")
    assert path.read_bytes() == b"mail"
    assert mode_of(path.parent) == 0o700


def test_an_existing_file_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "object.bin"
    write_atomically(path, b"old" * 1000)
    write_atomically(path, b"new")
    assert path.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["object.bin"]


def test_the_file_and_then_its_folder_are_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[bool] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    write_atomically(tmp_path / "f", b"data")
    assert synced == [False, True]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "object.bin"
    write_atomically(path, b"old")

    def no_rename(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError):
        write_atomically(path, b"new")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["object.bin"]


def test_temporary_files_are_hidden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names: list[str] = []

    def record(src: str, dst: str) -> None:
        names.append(Path(src).name)
        os.rename(src, dst)

    monkeypatch.setattr(os, "replace", record)
    write_atomically(tmp_path / "x.eml", b"mail")
    (name,) = names
    assert name.startswith(TEMP_PREFIX)
    assert name.startswith(".")
    assert not name.endswith(".eml")
