"""The `bitloot` command. Each subcommand is a small function; the work lives in the domains.

Errors a user can fix (configuration, an unreachable database) end as one line on stderr
and exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from bitloot.config import ConfigError, Settings, load_settings
from bitloot.resources import StartupError, first_line

EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace, Settings], int]


class CommandError(Exception):
    """A failure to report as one line (exit status 2)."""


def _database(settings: Settings, *, direct: bool = False) -> str:
    from bitloot.db.connect import database_url, direct_database_url
    from bitloot.db.embedded import EmbeddedPostgresError

    try:
        return direct_database_url(settings) if direct else database_url(settings)
    except EmbeddedPostgresError as exc:
        raise CommandError(str(exc)) from None


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    """Apply pending migrations and the roles' grants, or list the migrations' state.

    Run it as the login that owns the schema; `serve` and `worker` log in as a member of
    bitloot_app. When the roles are missing and this login may not create them, it prints
    the SQL an administrator runs once (bitloot/db/roles.sql). It connects to
    BITLOOT_DATABASE_DIRECT_URL when set: migrations want a session of their own, not a
    transaction pooler's.
    """
    import psycopg

    from bitloot.db.migrate import migrate, migration_states, roles_sql

    url = _database(settings, direct=True)
    try:
        if args.list:
            for state in migration_states(url):
                print(f"{'applied' if state.applied else 'pending'}  {state.id}")
            return 0
        result = migrate(url)
    except psycopg.OperationalError as exc:
        raise CommandError(f"cannot reach the database: {first_line(exc)}") from None
    except psycopg.errors.InsufficientPrivilege as exc:
        raise CommandError(
            f"{first_line(exc)}: run `bitloot migrate` as the login that owns the schema"
        ) from None
    if result.applied:
        for mid in result.applied:
            print(f"applied  {mid}")
    else:
        print("nothing to apply: the schema is current")
    if result.roles_granted:
        print("granted  bitloot_app, bitloot_auditor")
    else:
        print(
            "\nThe roles bitloot_app and bitloot_auditor do not exist, and this login may not"
            " create them.\nAn administrator runs this once, then `bitloot migrate` again:\n"
        )
        print(roles_sql())
    return 0


def cmd_products_add(args: argparse.Namespace, settings: Settings) -> int:
    """Add or update one catalog row."""
    from pydantic import ValidationError

    from bitloot.orders.models import ProductInput
    from bitloot.orders.service import add_product

    try:
        product = ProductInput(
            product_id=args.product_id,
            name=args.name,
            price=args.price,
            currency=args.currency,
            max_cost=args.max_cost,
            text_only=not args.allow_image_keys,
            active=not args.inactive,
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']}" for e in exc.errors()
        )
        raise CommandError(f"invalid product: {problems}") from None
    row = asyncio.run(_with_conn(settings, lambda conn: add_product(conn, product)))
    print(f"{row.product_id}  {row.name}  {row.price} {row.currency}  max cost {row.max_cost} eur")
    return 0


def cmd_products_list(args: argparse.Namespace, settings: Settings) -> int:
    """Print the catalog with what Kinguin last said (the platform, the EUR price of the
    cheapest offer, the keys a line may buy, when it was read)."""
    from datetime import UTC

    from bitloot.catalog.service import Answer, list_catalog

    rows = asyncio.run(_with_conn(settings, list_catalog))
    for row in rows:
        state = "active" if row.active else "inactive"
        kinguin = f"{row.kinguin_price} eur" if row.kinguin_price is not None else "-"
        stock = (
            "-"
            if row.kinguin_qty is None
            else Answer(None, row.kinguin_qty, row.kinguin_text_qty).stock(row.text_only)
        )
        checked = (
            row.checked_at.astimezone(UTC).isoformat(timespec="seconds")
            if row.checked_at
            else "never"
        )
        print(
            f"{row.product_id}  {row.name}  {row.price} {row.currency}  "
            f"max cost {row.max_cost} eur  platform {row.platform or '-'}  "
            f"kinguin {kinguin}  stock {stock}  checked {checked}  {state}"
        )
    if not rows:
        print("no products yet: add one with `bitloot products add`")
    return 0


async def _with_conn(settings: Settings, work: Callable[[Any], Any]) -> Any:
    import psycopg

    url = _database(settings)
    try:
        async with (
            await psycopg.AsyncConnection.connect(url, autocommit=True) as conn,
            conn.transaction(),
        ):
            return await work(conn)
    except psycopg.OperationalError as exc:
        raise CommandError(f"cannot reach the database: {first_line(exc)}") from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; every subcommand sets `handler`."""
    parser = argparse.ArgumentParser(prog="bitloot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    migrate = sub.add_parser("migrate", help="apply pending migrations (idempotent)")
    migrate.add_argument("--list", action="store_true", help="show each migration's state")
    migrate.set_defaults(handler=cmd_migrate)

    products = sub.add_parser("products", help="manage the catalog")
    psub = products.add_subparsers(dest="products_command", required=True, metavar="ACTION")
    add = psub.add_parser("add", help="add a product, or update it if it exists")
    add.add_argument("--product-id", required=True, help="the Kinguin productId")
    add.add_argument("--name", required=True)
    add.add_argument("--price", required=True, help="retail price, e.g. 19.99")
    add.add_argument("--currency", required=True, help="retail currency, e.g. eur")
    add.add_argument("--max-cost", required=True, help="most we pay Kinguin per unit (EUR)")
    add.add_argument("--allow-image-keys", action="store_true", help="accept image keys")
    add.add_argument("--inactive", action="store_true", help="add it switched off")
    add.set_defaults(handler=cmd_products_add)
    lst = psub.add_parser("list", help="list the catalog")
    lst.set_defaults(handler=cmd_products_list)

    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands() -> list[Callable[[Any], None]]:
    """Subcommands that domains register (kept out of this module to keep it small)."""
    import importlib

    from bitloot import commands

    registrars = []
    for path in commands.REGISTRARS:
        module, _, name = path.partition(":")
        registrars.append(getattr(importlib.import_module(module), name))
    return registrars


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `bitloot` console script."""
    warnings.filterwarnings("ignore", module="platformdirs")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        handler: Handler = args.handler
        return handler(args, settings)
    except (ConfigError, CommandError, StartupError) as exc:
        print(f"bitloot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("bitloot: interrupted", file=sys.stderr)
        return 130
