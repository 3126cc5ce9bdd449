"""The outbox is written in the transaction of the change: a status change that rolls back
leaves no event and no job; one that commits leaves exactly one of each per endpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from harness import COVERING_PAYMENT, bare_order
from webhook_delivery_support import add_endpoint, receiving, run_jobs, scalar, worker_resources

from bitloot.config import Settings

Conn = psycopg.AsyncConnection[Any]


class Abandon(Exception):
    """Raised to roll the transaction back."""


async def outbox_counts(conn: Conn) -> tuple[int, int, int]:
    return (
        await scalar(conn, "SELECT count(*) FROM webhook_messages"),
        await scalar(conn, "SELECT count(*) FROM webhook_deliveries"),
        await scalar(
            conn, "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'deliver_webhooks'"
        ),
    )


async def test_a_rolled_back_status_change_leaves_no_event_and_no_job(
    conn: Conn, make_settings: Callable[..., Settings]
) -> None:
    async with receiving(secrets={}) as rx, worker_resources(make_settings) as res:
        _, rx.secrets["current"] = await add_endpoint(conn, res.ring, rx.url)
        order_id = await bare_order(conn)
        await conn.execute("UPDATE orders SET status = 'waiting' WHERE id = %s", (order_id,))
        await conn.execute(COVERING_PAYMENT, (order_id,))
        with pytest.raises(Abandon):
            async with conn.transaction():
                await conn.execute("UPDATE orders SET status = 'paid' WHERE id = %s", (order_id,))
                assert await outbox_counts(conn) == (1, 1, 1)  # written, not yet committed
                raise Abandon
        assert await outbox_counts(conn) == (0, 0, 0)
        await run_jobs(res)
        assert rx.received == []

        await conn.execute("UPDATE orders SET status = 'paid' WHERE id = %s", (order_id,))
        assert await outbox_counts(conn) == (1, 1, 1)
        await run_jobs(res)
    assert [r.type for r in rx.received] == ["order.paid"]
    assert rx.all_verified()


async def test_an_event_nobody_subscribes_to_is_not_written(
    conn: Conn, make_settings: Callable[..., Settings]
) -> None:
    async with receiving(secrets={}) as rx, worker_resources(make_settings) as res:
        _, rx.secrets["current"] = await add_endpoint(
            conn, res.ring, rx.url, events=["order.fulfilled"]
        )
        order_id = await bare_order(conn)
        await conn.execute("UPDATE orders SET status = 'waiting' WHERE id = %s", (order_id,))
        await conn.execute(COVERING_PAYMENT, (order_id,))
        await conn.execute("UPDATE orders SET status = 'paid' WHERE id = %s", (order_id,))
        assert await outbox_counts(conn) == (0, 0, 0)
        await run_jobs(res)
    assert rx.received == []
