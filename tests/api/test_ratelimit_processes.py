"""The rate limits hold across server processes: two real `bitloot serve` processes sharing
one database, requests alternating between them, share one budget."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from stack import JWT_SECRET, Stack

from bitloot.processes import free_port

LIMIT = 4


@pytest.fixture
async def two_servers(db_url: str, tmp_path: Path) -> AsyncIterator[tuple[Stack, list[str]]]:
    stack = Stack(
        db_url=db_url,
        data_dir=tmp_path,
        extra_env={
            "BITLOOT_RATE_LIMIT_DOWNLOAD_PER_MINUTE": str(LIMIT),
            "BITLOOT_RATE_LIMIT_DOWNLOAD_PER_ADDRESS_PER_MINUTE": "1000",
        },
    )
    try:
        servers = await asyncio.gather(
            stack.start_api("api-a", free_port()), stack.start_api("api-b", free_port())
        )
        yield stack, list(servers)
    finally:
        stack.stop_all()


def customer_token(sub: str) -> str:
    now = int(time.time())
    claims = {"sub": sub, "role": "customer", "iat": now, "exp": now + 600}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


async def test_download_limit_is_shared_by_two_server_processes(
    two_servers: tuple[Stack, list[str]],
) -> None:
    stack, servers = two_servers
    with psycopg.connect(stack.db_url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO orders (user_id, email, currency, total_amount)"
            " VALUES ('u-1', 'ada@example.com', 'eur', 9.99) RETURNING id"
        ).fetchone()
    assert row is not None
    order_id: uuid.UUID = row[0]
    headers = {"Authorization": f"Bearer {customer_token('u-1')}"}
    answers: list[tuple[str, int, Any]] = []
    async with aiohttp.ClientSession() as http:
        for n in range(LIMIT + 2):
            server = servers[n % 2]
            url = f"{server}/fulfillment/{order_id}/download-link"
            async with http.get(url, headers=headers) as resp:
                answers.append((server, resp.status, resp.headers.get("Retry-After")))
    # Each process alone saw only LIMIT/2 + 1 requests; together they passed the limit.
    assert [status for _, status, _ in answers] == [409] * LIMIT + [429, 429]
    assert {server for server, status, _ in answers if status == 429} == set(servers)
    for _, _, retry_after in answers[LIMIT:]:
        assert retry_after is not None and 1 <= int(retry_after) <= 60 // LIMIT
