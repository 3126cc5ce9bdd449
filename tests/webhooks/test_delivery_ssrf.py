"""An endpoint whose address is private is sent nothing at delivery time, however it got
registered (an IP literal, or a name that resolves to loopback): the attempt is recorded
as `refused_address` and retried by the schedule, since a DNS record can be fixed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from webhook_delivery_support import (
    add_endpoint,
    make_due,
    order_with_events,
    receiving,
    rows,
    run_jobs,
    worker_resources,
)

from bitloot.config import Settings
from bitloot.metrics import REGISTRY

Conn = psycopg.AsyncConnection[Any]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_private_address_is_refused_and_nothing_is_sent(
    conn: Conn, make_settings: Callable[..., Settings], host: str
) -> None:
    refused = REGISTRY.get_sample_value(
        "bitloot_webhook_attempts_total", {"outcome": "refused_address"}
    )
    async with (
        receiving(secrets={}) as rx,
        worker_resources(make_settings, webhook_allow_private_urls=False) as res,
    ):
        assert rx.served is not None
        port = rx.served.url.rsplit(":", 1)[1]
        # https, so the address rule is what refuses it (http is refused before that).
        url = f"https://{host}:{port}/hooks"
        _, rx.secrets["current"] = await add_endpoint(conn, res.ring, url)
        await order_with_events(conn, "paid")
        await run_jobs(res)
        await make_due(conn)
        await run_jobs(res)
    assert rx.received == []
    attempts = await rows(
        conn, "SELECT attempt, outcome, status_code, error FROM webhook_attempts ORDER BY id"
    )
    assert [(a, o, s) for a, o, s, _ in attempts] == [
        (1, "refused_address", None),
        (2, "refused_address", None),
    ]
    assert all("127.0.0.1 is not a public address" in error for *_, error in attempts)
    assert await rows(conn, "SELECT status, attempts FROM webhook_deliveries") == [("pending", 2)]
    after = REGISTRY.get_sample_value(
        "bitloot_webhook_attempts_total", {"outcome": "refused_address"}
    )
    assert after is not None and after - (refused or 0) == 2
