"""`bitloot token`: mint a user JWT with the configured secret (for ops and tests)."""

from __future__ import annotations

import argparse
from typing import Any

from bitloot.cli import CommandError
from bitloot.config import ConfigError, Settings


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


def register(subparsers: Any) -> None:
    """Add `bitloot token` to the command line."""
    parser = subparsers.add_parser(
        "token", help="mint a JWT signed with BITLOOT_JWT_SECRET (for ops and tests)"
    )
    parser.add_argument("--sub", required=True, help="the subject (user id)")
    parser.add_argument("--email", help="the email claim")
    parser.add_argument("--admin", action="store_true", help="role admin instead of customer")
    parser.add_argument(
        "--ttl", type=_positive_int, default=3600, help="seconds until it expires (3600)"
    )
    parser.set_defaults(handler=cmd_token)
