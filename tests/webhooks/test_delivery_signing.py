"""What a delivery carries: Standard Webhooks headers that the `standardwebhooks` library
verifies, one signature per secret during a rotation's overlap (either secret verifies),
only the new one after; the customer's email only when asked for; the body's form."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from webhook_delivery_support import (
    add_endpoint,
    order_with_events,
    receiving,
    rotate_in_sql,
    run_jobs,
    scalar,
    worker_resources,
)

from bitloot.config import Settings

Conn = psycopg.AsyncConnection[Any]


async def test_deliveries_verify_with_either_secret_during_a_rotation_and_the_new_one_after(
    conn: Conn, make_settings: Callable[..., Settings]
) -> None:
    async with receiving(secrets={}) as rx, worker_resources(make_settings) as res:
        endpoint_id, rx.secrets["old"] = await add_endpoint(conn, res.ring, rx.url)
        await order_with_events(conn, "paid")
        await run_jobs(res)

        rx.secrets["new"] = await rotate_in_sql(conn, res.ring, endpoint_id, 3600)
        await order_with_events(conn, "paid")
        await run_jobs(res)

        await conn.execute(
            "UPDATE webhook_endpoint_secrets SET expires_at = now() - interval '1 second'"
            " WHERE endpoint_id = %s AND expires_at IS NOT NULL",
            (endpoint_id,),
        )
        await order_with_events(conn, "paid")
        await run_jobs(res)
    before, during, after = rx.received
    assert before.verified_by == {"old"}
    assert during.verified_by == {"old", "new"}  # two verifiers, each accepts it
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert after.verified_by == {"new"}
    assert len(after.headers["webhook-signature"].split(" ")) == 1


async def test_the_headers_and_body_follow_standard_webhooks(
    conn: Conn, make_settings: Callable[..., Settings]
) -> None:
    async with receiving(secrets={}) as rx, worker_resources(make_settings) as res:
        _, rx.secrets["current"] = await add_endpoint(conn, res.ring, rx.url)
        order_id = await order_with_events(conn, "paid")
        await run_jobs(res)
    (got,) = rx.received
    msg_id, created_at = (
        await (
            await conn.execute("SELECT msg_id, created_at FROM webhook_messages")
        ).fetchall()
    )[0]  # fmt: skip
    assert got.webhook_id == msg_id
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["User-Agent"].startswith("BitLoot-Webhooks/")
    assert abs(int(got.headers["webhook-timestamp"]) - created_at.timestamp()) < 60
    assert list(got.body) == ["type", "timestamp", "data"]
    assert got.body["type"] == "order.paid"
    assert got.body["timestamp"] == created_at.isoformat().replace("+00:00", "Z")
    assert got.data == {
        "orderId": str(order_id),
        "status": "paid",
        "fulfillmentStatus": "pending",
        "total": "9.99",
        "currency": "eur",
    }
    assert rx.all_verified()


async def test_the_email_is_sent_only_when_the_setting_says_so(
    conn: Conn, make_settings: Callable[..., Settings]
) -> None:
    async with receiving(secrets={}) as rx:
        async with worker_resources(make_settings) as res:
            _, rx.secrets["current"] = await add_endpoint(conn, res.ring, rx.url)
            await order_with_events(conn, "paid")
            await run_jobs(res)
        async with worker_resources(make_settings, webhook_include_email=True) as res:
            await order_with_events(conn, "paid")
            await run_jobs(res)
    without, with_email = rx.received
    assert "email" not in without.data
    assert b"ada@example.com" not in without.raw
    assert with_email.data["email"] == "ada@example.com"
    # The outbox keeps the email either way: the setting decides at sending.
    assert await scalar(conn, "SELECT count(*) FROM webhook_messages WHERE data ? 'email'") == 2
    assert rx.all_verified()
