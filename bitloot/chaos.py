"""Crash points for fault-injection tests and the chaos benchmark.

`crash_point("after_place")` kills this process with SIGKILL, as a power cut would, when
`BITLOOT_CRASH_AT` names that point; `BITLOOT_CRASH_ONCE` names a file that is created first,
so a restarted process with the same environment does not crash again. Unset (production),
a crash point is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

POINTS = (
    "before_place",  # placement marker committed, Kinguin order not yet placed
    "after_place",  # Kinguin order placed, not yet recorded
    "while_waiting",  # Kinguin order recorded, keys not all delivered yet
    "after_upload",  # ciphertexts uploaded, delivery log not committed
)

# The same two moments in a key replacement's purchase (bitloot/fulfillment/replace.py),
# named apart so a test can crash the replacement and not the order's first purchase.
REPLACEMENT_POINTS = (
    "replacement_before_place",  # replacement's marker committed, Kinguin order not placed
    "replacement_after_place",  # replacement's Kinguin order placed, not yet recorded
)


def crash_point(name: str) -> None:
    """Die here (SIGKILL) if the environment asks for it; see the module docstring."""
    if os.environ.get("BITLOOT_CRASH_AT") != name:
        return
    once = os.environ.get("BITLOOT_CRASH_ONCE")
    if once:
        marker = Path(once)
        if marker.exists():
            return
        marker.write_text(name)
    os.kill(os.getpid(), signal.SIGKILL)
