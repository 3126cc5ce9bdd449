"""`bitloot webhooks add|list|disable|enable|rotate-secret|remove|redeliver`: the outbound
webhook endpoints from the command line, as `/admin/webhook-endpoints` manages them over
HTTP (`redeliver` sends events again).

Each change goes through the admin service, so it is audited like the API's
(`admin_audit_log`, admin id `cli:<OS user>`, the reason given or `cli`). A signing secret
is printed once, by `add` and `rotate-secret`, and never again: BitLoot keeps it only
wrapped by the master key (`BITLOOT_MASTER_KEYS`, which those two commands need).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg

from bitloot.cli import CommandError
from bitloot.config import Settings
from bitloot.db.connect import database_url
from bitloot.logs import configure_logging
from bitloot.resources import StartupError, first_line, master_key_ring
from bitloot.vault.crypto import MasterKeyRing

T = TypeVar("T")
CLI_REASON = "cli"
SHOWN_ONCE = (
    "This secret is shown only now: put it in the receiver's configuration. BitLoot keeps "
    "it only wrapped and cannot show it again (`bitloot webhooks rotate-secret ID` makes a "
    "new one)."
)


def cli_actor() -> str:
    """Who acts, for the audit log and `created_by`: `cli:<OS user>`."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        return f"cli:uid-{os.getuid()}"


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    """Register an endpoint; print its id and its signing secret, once."""
    from bitloot.admin.service import add_webhook_endpoint

    ring = master_key_ring(settings)
    events = None if args.events is None else args.events.split(",")
    new = _run(
        settings,
        lambda conn: add_webhook_endpoint(
            conn,
            ring,
            admin_id=cli_actor(),
            reason=args.reason or CLI_REASON,
            url=args.url,
            events=events,
            description=args.description,
            allow_private=settings.webhook_allow_private_urls,
        ),
        ring=ring,
    )
    row = new.endpoint.row
    print(f"endpoint  {row.id}")
    print(f"url       {row.url}")
    print(f"events    {_events(row.event_types)}")
    print(f"secret    {new.secret}")
    print(SHOWN_ONCE)
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    """Print every registered endpoint, one a line; never a secret."""
    from bitloot.webhooks.service import list_endpoints

    found = _run(settings, list_endpoints)
    now = datetime.now(UTC)
    for endpoint in found:
        row = endpoint.row
        state = "enabled" if row.enabled else f"disabled ({row.disabled_reason})"
        current = endpoint.current_secret_at
        age = _age(now - current.astimezone(UTC)) if current else "-"
        line = (
            f"{row.id}  {row.url}  events {_events(row.event_types)}  {state}  "
            f"created {_instant(row.created_at)} by {row.created_by}  secret age {age}"
        )
        rotated = [s.expires_at for s in endpoint.secrets if s.expires_at is not None]
        if rotated:
            line += f"  (+{len(rotated)} old secret(s) signing until {_instant(max(rotated))})"
        print(line)
    if not found:
        print("no webhook endpoints: add one with `bitloot webhooks add URL`")
    return 0


def cmd_disable(args: argparse.Namespace, settings: Settings) -> int:
    """Stop new deliveries to an endpoint."""
    from bitloot.admin.service import disable_webhook_endpoint

    endpoint_id = _endpoint_id(args.id)
    actor = cli_actor()
    reason = args.reason or f"disabled by {actor}"
    found = _run(
        settings,
        lambda conn: disable_webhook_endpoint(conn, endpoint_id, admin_id=actor, reason=reason),
    )
    print(f"disabled  {endpoint_id}  ({found.row.disabled_reason})")
    return 0


def cmd_enable(args: argparse.Namespace, settings: Settings) -> int:
    """Enable an endpoint again; what is still pending for it is queued."""
    from bitloot.admin.service import enable_webhook_endpoint

    endpoint_id = _endpoint_id(args.id)
    _run(
        settings,
        lambda conn: enable_webhook_endpoint(
            conn, endpoint_id, admin_id=cli_actor(), reason=args.reason or CLI_REASON
        ),
    )
    print(f"enabled  {endpoint_id}")
    return 0


def cmd_rotate_secret(args: argparse.Namespace, settings: Settings) -> int:
    """Print an endpoint's new signing secret, once; the old one signs for the overlap."""
    from bitloot.admin.service import rotate_webhook_secret

    endpoint_id = _endpoint_id(args.id)
    ring = master_key_ring(settings)
    rotated = _run(
        settings,
        lambda conn: rotate_webhook_secret(
            conn,
            ring,
            endpoint_id,
            admin_id=cli_actor(),
            reason=args.reason or CLI_REASON,
            overlap_seconds=settings.webhook_secret_overlap,
        ),
        ring=ring,
    )
    print(f"endpoint  {endpoint_id}")
    print(f"secret    {rotated.secret}")
    print(SHOWN_ONCE)
    if rotated.previous_expires_at is not None:
        print(
            f"The previous secret keeps signing until {_instant(rotated.previous_expires_at)} "
            "(BITLOOT_WEBHOOK_SECRET_OVERLAP): switch the receiver before then."
        )
    return 0


def cmd_remove(args: argparse.Namespace, settings: Settings) -> int:
    """Remove an endpoint; its pending deliveries fail."""
    from bitloot.admin.service import remove_webhook_endpoint

    endpoint_id = _endpoint_id(args.id)
    removed = _run(
        settings,
        lambda conn: remove_webhook_endpoint(
            conn, endpoint_id, admin_id=cli_actor(), reason=args.reason or CLI_REASON
        ),
    )
    print(
        f"removed  {endpoint_id}  ({removed.failed_deliveries} pending deliveries failed: "
        "endpoint removed)"
    )
    return 0


def cmd_redeliver(args: argparse.Namespace, settings: Settings) -> int:
    """Send an endpoint one event again (--message), or every event it failed since a time
    (--since); audited."""
    from bitloot.admin.service import redeliver_webhooks
    from bitloot.webhooks.service import DeliveryNotFound

    endpoint_id = _endpoint_id(args.id)
    since = _since(args.since) if args.since else None
    try:
        count = _run(
            settings,
            lambda conn: redeliver_webhooks(
                conn,
                endpoint_id,
                admin_id=cli_actor(),
                reason=args.reason or CLI_REASON,
                msg_id=args.message,
                since=since,
            ),
        )
    except DeliveryNotFound:
        raise CommandError(f"endpoint {endpoint_id} was never sent event {args.message}") from None
    print(f"redelivering  {count} event(s) to {endpoint_id}")
    return 0


def _since(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise CommandError(f"--since {text!r}: give an ISO 8601 time with its offset, e.g. "
                           "2025-01-31T00:00:00+00:00")  # fmt: skip
    return at


async def rewrap_webhook_secrets(conninfo: str, ring: MasterKeyRing) -> int:
    """`bitloot keys rotate`'s part for webhooks: check the master keys, then re-wrap every
    signing secret under the active one (one transaction: there are few); how many."""
    from bitloot.vault.canary import check_master_keys
    from bitloot.webhooks.service import rewrap_endpoint_secrets

    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await check_master_keys(conn, ring)
        async with conn.transaction():
            return await rewrap_endpoint_secrets(conn, ring)


def _run(
    settings: Settings,
    work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]],
    *,
    ring: MasterKeyRing | None = None,
) -> T:
    """Run `work` in one transaction, turning what the user can fix into one line. Logs go
    to stderr, warnings only: stdout is the answer (the audit log records the change)."""
    configure_logging(settings.log_format, level="WARNING")
    return asyncio.run(_in_transaction(settings, work, ring))


async def _in_transaction(
    settings: Settings,
    work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]],
    ring: MasterKeyRing | None,
) -> T:
    from bitloot.vault.canary import check_master_keys
    from bitloot.vault.crypto import VaultError
    from bitloot.webhooks.service import EndpointNotFound, InvalidEndpoint

    try:
        async with await psycopg.AsyncConnection.connect(
            database_url(settings), autocommit=True
        ) as conn:
            if ring is not None:
                # A mistyped key would wrap a secret nobody else can unwrap: the same
                # check `serve` and `worker` make at start, before anything is wrapped.
                try:
                    await check_master_keys(conn, ring)
                except VaultError as exc:
                    raise StartupError(str(exc)) from None
            async with conn.transaction():
                return await work(conn)
    except psycopg.OperationalError as exc:
        raise CommandError(f"cannot reach the database: {first_line(exc)}") from None
    except InvalidEndpoint as exc:
        raise CommandError(f"refused: {exc.field}: {exc}") from None
    except EndpointNotFound as exc:
        raise CommandError(
            f"no such webhook endpoint: {exc} (see `bitloot webhooks list`)"
        ) from None


def _endpoint_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise CommandError(
            f"no such webhook endpoint: {text!r} is not an endpoint id "
            "(see `bitloot webhooks list`)"
        ) from None


def _events(event_types: list[str] | None) -> str:
    return "all" if event_types is None else ",".join(event_types)


def _instant(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds")


def _age(delta: timedelta) -> str:
    """A duration as the two largest units: `3d 4h`, `5h 2m`, `40s`."""
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n][:2]
    return " ".join(shown) or "0s"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `bitloot webhooks ...`."""
    hooks = sub.add_parser("webhooks", help="outbound webhook endpoints (Standard Webhooks)")
    wsub = hooks.add_subparsers(dest="webhooks_command", required=True, metavar="ACTION")
    reason = {"help": "why (kept in the audit log; default: cli)"}

    add = wsub.add_parser("add", help="register an endpoint; prints its signing secret once")
    add.add_argument("url", metavar="URL", help="https URL on a public address")
    add.add_argument(
        "--events", help="comma list of event types (default: all), e.g. order.paid,order.fulfilled"
    )
    add.add_argument("--description", help="what to call it")
    add.add_argument("--reason", **reason)
    add.set_defaults(handler=cmd_add)

    lst = wsub.add_parser("list", help="the registered endpoints (never a secret)")
    lst.set_defaults(handler=cmd_list)

    disable = wsub.add_parser("disable", help="stop new deliveries to an endpoint")
    disable.add_argument("id", metavar="ID")
    disable.add_argument("--reason", help="why (shown by list; default: disabled by cli:<user>)")
    disable.set_defaults(handler=cmd_disable)

    enable = wsub.add_parser("enable", help="enable an endpoint again")
    enable.add_argument("id", metavar="ID")
    enable.add_argument("--reason", **reason)
    enable.set_defaults(handler=cmd_enable)

    rotate = wsub.add_parser(
        "rotate-secret", help="a new signing secret, printed once; the old one signs a while"
    )
    rotate.add_argument("id", metavar="ID")
    rotate.add_argument("--reason", **reason)
    rotate.set_defaults(handler=cmd_rotate_secret)

    remove = wsub.add_parser("remove", help="remove an endpoint; its pending deliveries fail")
    remove.add_argument("id", metavar="ID")
    remove.add_argument("--reason", **reason)
    remove.set_defaults(handler=cmd_remove)

    redeliver = wsub.add_parser(
        "redeliver", help="send one event again, or every event failed since a time"
    )
    redeliver.add_argument("id", metavar="ID")
    which = redeliver.add_mutually_exclusive_group(required=True)
    which.add_argument("--message", metavar="MSG", help="the event's webhook-id (msg_...)")
    which.add_argument(
        "--since", metavar="TIME", help="every failed event since this ISO 8601 time"
    )
    redeliver.add_argument("--reason", **reason)
    redeliver.set_defaults(handler=cmd_redeliver)
