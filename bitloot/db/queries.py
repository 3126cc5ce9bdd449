"""Typed access to a package's `queries.sql`."""

from __future__ import annotations

from importlib.resources import files
from typing import LiteralString

from bitloot.sqlfile import load_queries


class QuerySet:
    """The named queries of one package, loaded once at import.

    The text comes from a file we ship, never from input, so it is as trusted as a literal
    (mypy treats LiteralString as str; the annotation documents the intent).
    """

    def __init__(self, package: str, filename: str = "queries.sql") -> None:
        self._queries = load_queries(files(package) / filename)

    def __getitem__(self, name: str) -> LiteralString:
        return self._queries[name]
