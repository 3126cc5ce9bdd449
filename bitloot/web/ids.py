"""Ids in request paths: a malformed id is the same 404 as a missing resource."""

from __future__ import annotations

import uuid

from aiohttp import web

from bitloot.web.errors import NotFound


def parse_order_id(request: web.Request) -> uuid.UUID:
    """The `{order_id}` path segment; a malformed id is the same 404 as a missing order."""
    try:
        return uuid.UUID(request.match_info["order_id"])
    except ValueError:
        raise NotFound("No such order.") from None
