"""A `cursor` PostgreSQL could not compare (NUL or a lone surrogate, in the parameter itself
or inside what it decodes to) is a 422 naming the parameter, never a 500."""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp
import pytest
from admin_support import Tokens
from structlog.testing import capture_logs
from yarl import URL

from bitloot.web.cursor import InvalidCursor, decode_cursor


def cursor_of(*members: object) -> str:
    raw = json.dumps(list(members), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


AT = "2025-03-01T12:00:00+00:00"
DECODES_BADLY = [
    cursor_of(1, AT, "\x00"),
    cursor_of(1, AT, "pay-\x00-1"),
    cursor_of(1, AT, "\ud800"),
    cursor_of(1, AT, "pay-\udfff"),
]


@pytest.mark.parametrize("cursor", DECODES_BADLY)
def test_a_cursor_holding_nul_or_a_lone_surrogate_is_not_ours(cursor: str) -> None:
    with capture_logs() as logs, pytest.raises(InvalidCursor):
        decode_cursor(cursor)
    assert logs == [{"event": "cursor.refused", "log_level": "warning"}]


@pytest.mark.parametrize(
    "raw_query",
    [
        *(f"cursor={c}" for c in DECODES_BADLY),
        "cursor=%00",
        "cursor=abc%00def",
        "cursor=%ED%A0%80",
        "cursor=%FF",
    ],
)
async def test_admin_payments_answers_422(
    api: Any, http: aiohttp.ClientSession, tokens: Tokens, raw_query: str
) -> None:
    url = URL(f"{api.url}/admin/payments?{raw_query}", encoded=True)
    async with http.get(url, headers=tokens.admin) as resp:
        problem = await resp.json(content_type=None)
        assert resp.status == 422, problem
        assert resp.content_type == "application/problem+json"
    assert problem["errors"][0]["loc"] == ["query", "cursor"]
