"""Operators' commands: `bitloot token` (mint a JWT for ops and tests) and `bitloot keys
rotate` (re-wrap every stored data key under the newest master key)."""

from __future__ import annotations

import argparse
import asyncio

from bitloot.cli import CommandError
from bitloot.config import ConfigError, Settings
from bitloot.db.connect import database_url
from bitloot.resources import StartupError, master_key_ring


def cmd_rotate(args: argparse.Namespace, settings: Settings) -> int:
    """Rotate with a progress bar on stderr; safe to interrupt and run again."""
    from bitloot.vault.crypto import VaultError
    from bitloot.vault.rotate import run_rotate

    ring = master_key_ring(settings)
    try:
        rewrapped = asyncio.run(run_rotate(database_url(settings), ring, args.batch_size))
    except VaultError as exc:
        raise StartupError(str(exc)) from None
    print(f"re-wrapped {rewrapped} data key(s) under master key {ring.active_id!r}")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a whole number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    """Print a freshly minted user (or admin) JWT, and nothing else, on stdout."""
    from bitloot.auth.tokens import mint_user_token

    try:
        token = mint_user_token(
            settings, sub=args.sub, email=args.email, admin=args.admin, ttl=args.ttl
        )
    except (ConfigError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    print(token)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `bitloot keys rotate` and `bitloot token`."""
    keys = sub.add_parser("keys", help="master key operations")
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    rotate = ksub.add_parser("rotate", help="re-wrap every data key under the newest master key")
    rotate.add_argument("--batch-size", type=int, default=1000)
    rotate.set_defaults(handler=cmd_rotate)

    token = sub.add_parser(
        "token", help="mint a JWT signed with BITLOOT_JWT_SECRET (for ops and tests)"
    )
    token.add_argument("--sub", required=True, help="the subject (user id)")
    token.add_argument("--email", help="the email claim")
    token.add_argument("--admin", action="store_true", help="role admin instead of customer")
    token.add_argument(
        "--ttl", type=_positive_int, default=3600, help="seconds until it expires (3600)"
    )
    token.set_defaults(handler=cmd_token)
