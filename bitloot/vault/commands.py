"""`bitloot keys rotate`: re-wrap every stored data key under the newest master key."""

from __future__ import annotations

import argparse
import asyncio

from bitloot.config import Settings
from bitloot.db.connect import database_url
from bitloot.vault.cli import run_rotate
from bitloot.vault.crypto import VaultError
from bitloot.wiring import StartupError, master_key_ring


def cmd_rotate(args: argparse.Namespace, settings: Settings) -> int:
    """Rotate with a progress bar on stderr; safe to interrupt and run again."""
    ring = master_key_ring(settings)
    try:
        rewrapped = asyncio.run(run_rotate(database_url(settings), ring, args.batch_size))
    except VaultError as exc:
        raise StartupError(str(exc)) from None
    print(f"re-wrapped {rewrapped} data key(s) under master key {ring.active_id!r}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `bitloot keys rotate`."""
    keys = sub.add_parser("keys", help="master key operations")
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    rotate = ksub.add_parser("rotate", help="re-wrap every data key under the newest master key")
    rotate.add_argument("--batch-size", type=int, default=1000)
    rotate.set_defaults(handler=cmd_rotate)
