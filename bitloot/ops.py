"""Operators' commands: `bitloot token` (mint a JWT for ops and tests), `bitloot keys
rotate` (re-wrap every stored data key and webhook signing secret under the newest master
key) and `bitloot storage check` (prove the configured bucket carries the key path,
`bitloot.storage.golive`)."""

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
    from bitloot.webhook_commands import rewrap_webhook_secrets

    ring = master_key_ring(settings)
    conninfo = database_url(settings)
    try:
        # The few webhook signing secrets first, so the data keys' pass, which ends by
        # naming the master keys nothing needs any more, sees them re-wrapped already.
        secrets = asyncio.run(rewrap_webhook_secrets(conninfo, ring))
        rewrapped = asyncio.run(run_rotate(conninfo, ring, args.batch_size))
    except VaultError as exc:
        raise StartupError(str(exc)) from None
    print(f"re-wrapped {rewrapped} data key(s) under master key {ring.active_id!r}")
    print(f"re-wrapped {secrets} webhook signing secret(s) under master key {ring.active_id!r}")
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


def cmd_storage_check(args: argparse.Namespace, settings: Settings) -> int:
    """Prove the configured object store carries the key path: one line per step on stdout;
    0 when the key path would work, 1 when a step failed (it says what to change)."""
    from bitloot.logs import configure_logging
    from bitloot.storage import StorageError, storage_from_url
    from bitloot.storage.golive import check_storage, passed
    from bitloot.vault.crypto import LOCAL_URL_PURPOSE

    configure_logging(settings.log_format, level="WARNING")  # stderr; stdout is the report
    url = settings.effective_storage_url
    # Only the local backend signs with keys derived from the master keys; S3 presigns.
    local = url.partition("://")[0].lower() == "file"
    signing_keys = master_key_ring(settings).derived_keys(LOCAL_URL_PURPOSE) if local else []
    s3_key = settings.s3_access_key_id
    s3_secret = settings.s3_secret_access_key
    try:
        storage = storage_from_url(
            url,
            public_url=settings.public_url,
            signing_keys=signing_keys,
            s3_endpoint_url=settings.s3_endpoint_url,
            s3_access_key_id=s3_key.get_secret_value() if s3_key else None,
            s3_secret_access_key=s3_secret.get_secret_value() if s3_secret else None,
            s3_region=settings.s3_region,
        )
    except StorageError as exc:
        raise CommandError(str(exc)) from None
    print(f"checking {url} for the key page at {settings.public_url}", flush=True)
    steps = asyncio.run(
        check_storage(
            storage,
            public_url=settings.public_url,
            ttl_seconds=settings.signed_url_ttl,
            report=lambda step: print(step.line(), flush=True),
        )
    )
    failed = sum(step.verdict == "FAIL" for step in steps)
    if passed(steps):
        unsure = any(step.verdict in ("warn", "skip") for step in steps)
        print("passed: the key path works" + ("; read the warn/skip lines" if unsure else ""))
        return 0
    print(f"FAILED: {failed} step(s); fix what they say and run `bitloot storage check` again")
    return 1


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `bitloot keys rotate`, `bitloot token` and `bitloot storage check`."""
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

    storage = sub.add_parser("storage", help="object store operations")
    ssub = storage.add_subparsers(dest="storage_command", required=True, metavar="ACTION")
    check = ssub.add_parser(
        "check",
        help="prove the configured bucket serves the key path (before go-live, after a "
        "credential change); exit 0 when it does",
    )
    check.set_defaults(handler=cmd_storage_check)
