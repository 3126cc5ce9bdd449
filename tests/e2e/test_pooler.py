"""BitLoot behind a real PgBouncer: two `serve` and two `worker` processes whose pools go
through the pooler, the whole order path on them, and the workers still hearing of new
jobs at once (LISTEN on the direct connection in transaction mode, through the pooler in
session mode) while their polling interval is 30 s."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from mail import SmtpSink, text_of
from pgbouncer import PgBouncer, pgbouncer_binary
from psycopg.conninfo import conninfo_to_dict
from stack import JWT_SECRET, Stack, issued_serials, reveal

from bitloot.auth.tokens import mint_user_token
from bitloot.config import environ_without_bitloot, load_settings
from bitloot.processes import free_port
from bitloot.sim.kinguin_catalog import TEXT_PRODUCT_ID

POLLING_INTERVAL = 30.0
ORDERS = 6  # more than psycopg's prepare threshold (5) per process
ORDERS_PER_MINUTE = ORDERS  # the next POST /orders, on either server, is refused
DOWNLOADS_PER_MINUTE = 3


async def start_pgbouncer(db_url: str, pool_mode: str, pool_size: int) -> PgBouncer:
    binary = pgbouncer_binary()
    if binary is None:
        pytest.skip("pgbouncer is not installed: run `sudo scripts/install-test-packages.sh`")
    params = conninfo_to_dict(db_url)
    bouncer = PgBouncer(
        pg_host=str(params["host"]),
        pg_port=int(params.get("port") or 5432),
        user=str(params.get("user") or "postgres"),
        pool_mode=pool_mode,
        pool_size=pool_size,
    )
    await asyncio.to_thread(bouncer.start, binary, str(params["dbname"]))
    return bouncer


@pytest.fixture
async def bouncer(request: pytest.FixtureRequest, stack: Stack) -> AsyncIterator[PgBouncer]:
    mode, size = request.param
    b = await start_pgbouncer(stack.db_url, mode, size)
    try:
        yield b
    finally:
        # BitLoot first: its processes would wait for the pooler on their way out.
        stack.stop_all()
        b.stop()


def log_events(stack: Stack, name: str, event: str) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in stack.log_text(name).splitlines()
        if f'"{event}"' in line and line.startswith("{")
    ]


async def wait_for_event(
    stack: Stack, name: str, event: str, timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not (found := log_events(stack, name, event)):
        assert time.monotonic() < deadline, stack.log_text(name)[-3000:]
        await asyncio.sleep(0.2)
    return found[0]


async def post_order(http: aiohttp.ClientSession, api: str) -> tuple[int, dict[str, Any]]:
    body = {"email": "ada@example.com", "items": [{"productId": TEXT_PRODUCT_ID, "qty": 1}]}
    async with http.post(f"{api}/orders", json=body) as r:
        return r.status, dict(await r.json(content_type=None))


def pooled_env(stack: Stack, bouncer: PgBouncer) -> None:
    stack.extra_env.update(
        DATABASE_URL=bouncer.url(str(conninfo_to_dict(stack.db_url)["dbname"])),
        BITLOOT_DATABASE_POOLER=bouncer.pool_mode,
        BITLOOT_API_POOL_SIZE="4",
        BITLOOT_WORKER_POOL_SIZE="8",
        BITLOOT_JOB_POLLING_INTERVAL=str(POLLING_INTERVAL),
        BITLOOT_RATE_LIMIT_ORDERS_PER_MINUTE=str(ORDERS_PER_MINUTE),
        BITLOOT_RATE_LIMIT_DOWNLOAD_PER_MINUTE=str(DOWNLOADS_PER_MINUTE),
    )


@pytest.mark.parametrize(
    "bouncer",
    # Transaction mode shares 6 server connections among every client; session mode gives
    # each client connection its own (2 x 4 + 2 x 8 pooled connections, and LISTEN).
    [
        pytest.param(("transaction", 6), id="transaction"),
        pytest.param(("session", 40), id="session"),
    ],
    indirect=True,
)
async def test_order_path_through_the_pooler(
    stack: Stack, bouncer: PgBouncer, smtp: SmtpSink
) -> None:
    pooled_env(stack, bouncer)
    stack.extra_env["BITLOOT_SMTP_URL"] = smtp.url
    # Transaction mode: the workers LISTEN on the database itself. Session mode: through
    # the pooler (a session pooler keeps the LISTEN's session).
    if bouncer.pool_mode == "transaction":
        stack.extra_env["BITLOOT_DATABASE_DIRECT_URL"] = stack.db_url
    expected_listen = "direct" if bouncer.pool_mode == "transaction" else "database_url"
    await stack.start_sim()
    apis = list(await asyncio.gather(stack.start_api(), stack.start_api("api2", free_port())))
    for name in ("worker", "worker2"):
        stack.start_worker(name)
    for name in ("api", "api2"):
        started = await wait_for_event(stack, name, "serve.started")
        assert (started["pool_size"], started["pooler"]) == (4, bouncer.pool_mode)
    for name in ("worker", "worker2"):
        started = await wait_for_event(stack, name, "worker.started")
        assert (started["pool_size"], started["pooler"], started["listen"]) == (
            8, bouncer.pool_mode, expected_listen
        )  # fmt: skip
        assert not log_events(stack, name, "worker.polling")
    settings = load_settings(jwt_secret=JWT_SECRET)
    admin = {"Authorization": f"Bearer {mint_user_token(settings, sub='ops-1', admin=True)}"}

    async with aiohttp.ClientSession() as http:
        orders = []
        for i in range(ORDERS):  # alternately on each server
            status, body = await post_order(http, apis[i % 2])
            assert status == 201, body
            orders.append(body)
        # The rate limit is shared by both servers (its buckets are in PostgreSQL).
        for api in apis:
            assert (await post_order(http, api))[0] == 429

        # Paid -> fulfilled, one order at a time: a job picked up by polling would wait up
        # to 30 s; one picked up through LISTEN, well under a second plus the work.
        time_to_key = []
        for order in orders:
            await stack.pay(http, order["id"])
            paid = time.monotonic()
            rows = await stack.wait_until([order["id"]], timeout=POLLING_INTERVAL * 2)
            time_to_key.append(time.monotonic() - paid)
            assert rows[order["id"]][:2] == ("fulfilled", "fulfilled"), rows
        print(f"\n{bouncer.pool_mode}: paid -> fulfilled (s):", [round(t, 2) for t in time_to_key])
        assert max(time_to_key) < POLLING_INTERVAL / 3, time_to_key

        for i, order in enumerate(orders):
            issued = await issued_serials(stack, http, order["id"])
            status, revealed = await reveal(http, apis[i % 2], order["id"], order["accessToken"])
            assert (status, revealed) == (200, issued)
        # The download limit per token holds across both servers too.
        token = orders[0]["accessToken"]
        statuses = [
            (await reveal(http, apis[n % 2], orders[0]["id"], token))[0]
            for n in range(DOWNLOADS_PER_MINUTE)
        ]
        assert statuses == [200] * (DOWNLOADS_PER_MINUTE - 1) + [429]

        for api in apis:
            async with http.get(f"{api}/admin/payments", headers=admin) as r:
                assert r.status == 200, await r.text()
                assert len((await r.json())["items"]) == ORDERS
            async with http.get(
                f"{api}/admin/orders/{orders[1]['id']}/fulfillment", headers=admin
            ) as r:
                assert r.status == 200, await r.text()

    deadline = time.monotonic() + 30
    while any(not smtp.for_order(o["id"]) for o in orders):
        assert time.monotonic() < deadline, "delivery emails missing"
        await asyncio.sleep(0.2)
    for order in orders:
        assert f"/orders/{order['id']}/key" in text_of(smtp.for_order(order["id"])[0])
    await stack.wait_settled([o["id"] for o in orders])
    for name in ("api", "api2", "worker", "worker2"):
        log = stack.log_text(name)
        assert "PreparedStatement" not in log and '"level": "error"' not in log, log[-3000:]


@pytest.mark.parametrize("bouncer", [pytest.param(("transaction", 4), id="transaction")],
                         indirect=True)  # fmt: skip
async def test_transaction_pooler_without_direct_url_polls_and_says_so_once(
    stack: Stack, bouncer: PgBouncer
) -> None:
    pooled_env(stack, bouncer)
    stack.extra_env["BITLOOT_JOB_POLLING_INTERVAL"] = "1"
    await stack.start_sim()
    await stack.start_api()
    stack.start_worker()
    started = await wait_for_event(stack, "worker", "worker.started")
    assert started["listen"] == "polling"
    async with aiohttp.ClientSession() as http:
        order = await stack.create_order(http, [{"productId": TEXT_PRODUCT_ID, "qty": 1}])
        await stack.pay(http, order["id"])
        rows = await stack.wait_until([order["id"]], timeout=30)
    assert rows[order["id"]][:2] == ("fulfilled", "fulfilled"), rows
    polling = log_events(stack, "worker", "worker.polling")
    assert len(polling) == 1, stack.log_text("worker")[-3000:]
    assert polling[0]["interval"] == 1.0
    assert "BITLOOT_DATABASE_DIRECT_URL" in polling[0]["reason"]


def test_migrate_runs_on_the_direct_url(db_url: str, tmp_path: Path) -> None:
    """`bitloot migrate` connects to BITLOOT_DATABASE_DIRECT_URL, not to DATABASE_URL (a
    pooler's, here one where nothing listens)."""
    env = {
        **environ_without_bitloot(),
        "DATABASE_URL": f"postgresql://nobody@127.0.0.1:{free_port()}/nowhere?connect_timeout=2",
        "BITLOOT_DATABASE_POOLER": "transaction",
        "BITLOOT_DATABASE_DIRECT_URL": db_url,
    }
    result = subprocess.run(
        [sys.executable, "-m", "bitloot", "migrate"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "nothing to apply" in result.stdout
