"""Child processes of the local tools (`demo`, `up`, `bench`): `python -m bitloot ...`
in their own process groups, logging to files, stopped however the parent ends."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import BinaryIO


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Send `sig` to the child's whole process group (it may have children of its own)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def open_private_log(path: Path) -> BinaryIO:
    """`path` opened for appending, readable by its owner only (0600, in a 0700 folder when
    this creates it): logs carry emails, order ids and provider answers, and an earlier
    run's file, whatever its mode, is tightened too."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.fchmod(fd, 0o600)
        return os.fdopen(fd, "ab")
    except BaseException:
        os.close(fd)
        raise


class ChildProcesses:
    """Mixin for a stack of children; the class provides `procs`, `env` and `log_path`."""

    procs: dict[str, subprocess.Popen[bytes]]
    env: dict[str, str]
    # The exception raised when a child dies or does not answer.
    error: type[Exception] = RuntimeError

    def log_path(self, name: str) -> Path:
        """Where child `name` writes its output."""
        raise NotImplementedError

    def spawn(
        self, name: str, *args: str, module: str = "bitloot", prefix: tuple[str, ...] = ()
    ) -> subprocess.Popen[bytes]:
        """Start `python -m <module> <args>` (optionally under `prefix`, e.g. a profiler)."""
        with open_private_log(self.log_path(name)) as log:
            proc = subprocess.Popen(
                [*prefix, sys.executable, "-m", module, *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.procs[name] = proc
        return proc

    def check_alive(self, name: str) -> None:
        """Raise `error` if child `name` has exited."""
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is not None:
            raise self.error(
                f"{name} exited with status {proc.returncode}; see {self.log_path(name)}"
            )

    def wait_http(self, name: str, url: str, timeout: float = 60) -> None:
        """Block until `url` answers 200, or raise naming the child and its log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive(name)
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise self.error(f"{name} did not answer in {timeout:.0f}s; see {self.log_path(name)}")

    def kill_child(self, name: str, sig: int = signal.SIGKILL, timeout: float = 30) -> int:
        """Send `sig` to child `name`'s process group, wait for it to exit and forget it;
        its exit status. A child still running after `timeout` stays known (and raises
        `subprocess.TimeoutExpired`), so `stop_children` still ends it."""
        proc = self.procs[name]
        if proc.poll() is None:
            signal_group(proc, sig)
        status = proc.wait(timeout=timeout)
        del self.procs[name]
        return status

    def stop_children(self, *names: str, timeout: float = 20) -> None:
        """SIGTERM the named children (all when none is named), SIGKILL if they linger."""
        chosen = list(names) if names else list(self.procs)
        for name in chosen:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name in chosen:
            proc = self.procs.pop(name, None)
            if proc is None:
                continue
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                signal_group(proc, signal.SIGKILL)
                proc.wait()
