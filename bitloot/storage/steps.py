"""One step of `bitloot storage check` and its verdict, shared by the S3 and local checks."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

CANARY_PREFIX = "bitloot-storage-check/"

Verdict = Literal["ok", "FAIL", "warn", "skip"]
Report = Callable[["Step"], None]


@dataclass(frozen=True)
class Step:
    """One checked step and its verdict; `detail` is safe to print (it never holds a
    secret: only status codes, error codes, names and our own hints)."""

    verdict: Verdict
    name: str
    detail: str = ""

    def line(self) -> str:
        """The step as the command prints it."""
        if self.verdict == "ok":
            return f"ok  {self.name}" + (f" ({self.detail})" if self.detail else "")
        return f"{self.verdict} {self.name}: {self.detail}"


@dataclass
class Run:
    """The steps so far; each is reported as it is added."""

    report: Report
    steps: list[Step] = field(default_factory=list)

    def add(self, verdict: Verdict, name: str, detail: str = "") -> None:
        """Record one step and report it at once (a slow store shows its progress)."""
        step = Step(verdict, name, detail)
        self.steps.append(step)
        self.report(step)


def passed(steps: list[Step]) -> bool:
    """True when the key path would work: no step failed (warn and skip do not fail)."""
    return all(step.verdict != "FAIL" for step in steps)


def canary_key() -> str:
    """A fresh canary object key under `CANARY_PREFIX`."""
    return f"{CANARY_PREFIX}{uuid.uuid4().hex}.txt"


def canary_body(key: str) -> bytes:
    """What the canary holds: its own name and the time, nothing secret."""
    written = datetime.now(UTC).isoformat(timespec="seconds")
    return f"bitloot storage check canary {key}, written {written}\n".encode()


def flip(sig: str) -> str:
    """`sig` with its last character changed (a tampered signature)."""
    return sig[:-1] + ("0" if sig[-1:] != "0" else "1")
