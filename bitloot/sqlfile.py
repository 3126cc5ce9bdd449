"""Named queries kept in `.sql` files.

A file holds blocks, each introduced by a ``-- name: some_query`` line and running to the
next one::

    -- name: count_orders
    -- Orders in one state.
    SELECT count(*) FROM orders WHERE status = %(status)s;

Whole-line ``--`` comments inside a block are dropped: psycopg reads every ``%`` in the
text as a placeholder, so a stray ``%`` in a comment would break the query at run time.
Use it as ``queries = load_queries(files("bitloot.vault") / "queries.sql")`` so it works
from an installed wheel as well as from a checkout.
"""

from __future__ import annotations

import os
import re
from importlib.resources.abc import Traversable
from pathlib import Path

_NAME_LINE = re.compile(r"--\s*name:\s*(?P<name>\S+)\s*")
_VALID_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_COMMENT_LINE = re.compile(r"\s*--")


class QueryFileError(ValueError):
    """A query file is malformed (text outside a block, a duplicate or empty block, ...)."""


def load_queries(path: str | os.PathLike[str] | Traversable) -> dict[str, str]:
    """Read a `.sql` file of ``-- name:`` blocks into ``{name: sql}``."""
    source = Path(path) if isinstance(path, str | os.PathLike) else path
    return parse_queries(source.read_text(encoding="utf-8"), source=str(path))


def parse_queries(text: str, *, source: str = "<string>") -> dict[str, str]:
    """Split ``-- name:`` blocks out of SQL text; see the module docstring for the format."""
    queries: dict[str, str] = {}
    name: str | None = None
    body: list[str] = []
    start = 0

    def finish() -> None:
        if name is None:
            return
        sql = "\n".join(body).strip()
        if not sql:
            raise QueryFileError(f"{source}:{start}: query {name!r} is empty")
        queries[name] = sql

    for lineno, line in enumerate(text.splitlines(), start=1):
        header = _NAME_LINE.fullmatch(line.strip())
        if header:
            finish()
            name, body, start = header["name"], [], lineno
            if not _VALID_NAME.fullmatch(name):
                raise QueryFileError(f"{source}:{lineno}: bad query name {name!r}")
            if name in queries:
                raise QueryFileError(f"{source}:{lineno}: query {name!r} is defined twice")
        elif _COMMENT_LINE.match(line) or (name is None and not line.strip()):
            continue
        elif name is None:
            raise QueryFileError(f"{source}:{lineno}: SQL before the first '-- name:' line")
        else:
            body.append(line.rstrip())
    finish()
    return queries
