"""Ids in request paths: a malformed id is the same 404 as a missing resource."""

from __future__ import annotations

import uuid

from aiohttp import web

from bitloot.web.contract import uuid_path
from bitloot.web.errors import NotFound

# For contracts: the `{order_id}` parameter, and the 404 of `parse_order_id` and of an
# order the caller may not see.
ORDER_ID = uuid_path("order_id", "order")
NO_ORDER = "No such order, or one this token may not see (the same answer)."


def parse_order_id(request: web.Request) -> uuid.UUID:
    """The `{order_id}` path segment; a malformed id is the same 404 as a missing order."""
    try:
        return uuid.UUID(request.match_info["order_id"])
    except ValueError:
        raise NotFound("No such order.") from None
