"""The log files of the stack's child processes (demo, up, bench, the e2e tests) are readable
by their owner only, whatever the umask and whatever an earlier run left behind."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bitloot.processes import ChildProcesses


class Children(ChildProcesses):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env = dict(os.environ)

    def log_path(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0o022)  # what most systems use: files 0644, folders 0755
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_child_logs_are_owner_only(tmp_path: Path, open_umask: None) -> None:
    children = Children(tmp_path)
    children.spawn("child", module="this")  # prints the Zen of Python
    try:
        assert children.procs["child"].wait(timeout=30) == 0
    finally:
        children.stop_children()
    log = children.log_path("child")
    assert mode(log) == 0o600
    assert mode(log.parent) == 0o700
    assert "Beautiful is better than ugly" in log.read_text()


def test_an_earlier_world_readable_log_is_tightened_and_kept(
    tmp_path: Path, open_umask: None
) -> None:
    children = Children(tmp_path)
    log = children.log_path("child")
    log.parent.mkdir(parents=True)
    log.write_text("from an earlier run\n")
    log.chmod(0o644)
    children.spawn("child", module="this")
    try:
        assert children.procs["child"].wait(timeout=30) == 0
    finally:
        children.stop_children()
    assert mode(log) == 0o600
    text = log.read_text()
    assert text.startswith("from an earlier run\n") and "Zen of Python" in text
