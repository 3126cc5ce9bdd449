"""Registry of subcommands defined outside `bitloot.cli` (serve, worker, sim, keys, ...)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

REGISTRARS: list[Callable[[Any], None]] = []
