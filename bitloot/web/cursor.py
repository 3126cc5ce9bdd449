"""Opaque keyset cursors: a position (created_at, id) as base64url JSON, nothing else.

One codec for every keyset-paginated list (`GET /orders`, `GET /admin/payments`). A cursor
is not signed: it only says where to resume a list the caller may read anyway, and a forged
one just starts the page somewhere else. Whatever is not a cursor we issued is
`InvalidCursor`, which handlers answer with a 4xx, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import NamedTuple

import structlog

from bitloot.text import is_storable

log = structlog.get_logger(__name__)

_VERSION = 1
_MAX_ID_CHARS = 200
_MAX_CURSOR_CHARS = 400


class InvalidCursor(ValueError):
    """The cursor is not one we issued (or was cut short)."""


class Position(NamedTuple):
    """Where a page ended: its last row's created_at and id."""

    created_at: datetime
    id: str


def encode_cursor(position: Position) -> str:
    """The opaque text for `position` (URL-safe, no padding)."""
    raw = json.dumps(
        [_VERSION, position.created_at.isoformat(), position.id], separators=(",", ":")
    )
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> Position:
    """The position `cursor` names; `InvalidCursor` for anything else."""
    if not cursor or len(cursor) > _MAX_CURSOR_CHARS or not cursor.isascii():
        raise _refused()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        version, at, ident = json.loads(raw)
        created_at = datetime.fromisoformat(at)
    except (binascii.Error, ValueError, TypeError, RecursionError):
        raise _refused() from None
    if (
        version != _VERSION
        or created_at.tzinfo is None
        or not isinstance(ident, str)
        or not 0 < len(ident) <= _MAX_ID_CHARS
        # JSON may carry \u0000 or a lone surrogate, which PostgreSQL cannot compare.
        or not is_storable(ident)
    ):
        raise _refused()
    return Position(created_at, ident)


def _refused() -> InvalidCursor:
    # We issue every cursor; one that does not decode was made by hand (or cut short).
    log.warning("cursor.refused")
    return InvalidCursor("not a cursor from this list")
