"""Registry of subcommands defined outside `bitloot.cli` (serve, worker, sim, keys, ...)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

REGISTRARS: list[Callable[[Any], None]] = []

from bitloot.auth.commands import register as _register_token  # noqa: E402

REGISTRARS.append(_register_token)
