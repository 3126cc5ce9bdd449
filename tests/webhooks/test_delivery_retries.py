"""How deliveries fare against a receiver that fails: retried on 5xx by the schedule with
the same webhook-id while the order's later events wait, failed at once on other 4xx,
Retry-After honoured, an endpoint failing for days disabled, disabled and removed
endpoints sent nothing. Real receiver, real database, a real procrastinate worker pass."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
from webhook_delivery_support import (
    add_endpoint,
    make_due,
    order_with_events,
    receiving,
    rows,
    run_jobs,
    scalar,
    worker_resources,
)

from bitloot.config import Settings
from bitloot.webhooks.delivery import MAX_ATTEMPTS, RETRY_DELAYS

Conn = psycopg.AsyncConnection[Any]

ATTEMPTS = (
    "SELECT m.event_type, a.attempt, a.outcome, a.status_code FROM webhook_attempts a"
    " JOIN webhook_messages m ON m.id = a.message_id ORDER BY a.id"
)
DELIVERIES = (
    "SELECT m.event_type, d.status, d.attempts FROM webhook_deliveries d"
    " JOIN webhook_messages m ON m.id = d.message_id ORDER BY d.message_id"
)


async def waiting_jobs(conn: Conn) -> list[tuple[Any, ...]]:
    """The webhooks jobs still to run: (lock, seconds until due)."""
    return await rows(
        conn,
        "SELECT lock, extract(epoch FROM coalesce(scheduled_at, now()) - now())::float8"
        " FROM procrastinate_jobs WHERE task_name = 'deliver_webhooks' AND status = 'todo'",
    )


def test_the_schedule_is_standard_webhooks_stretched_to_about_three_days() -> None:
    assert RETRY_DELAYS[:8] == (5, 300, 1800, 7200, 18000, 36000, 36000, 50400)
    assert MAX_ATTEMPTS == 10
    assert timedelta(days=2.5) < timedelta(seconds=sum(RETRY_DELAYS)) < timedelta(days=3)


async def test_a_500_is_retried_with_the_same_id_and_holds_the_orders_later_events(
    conn: Conn, make_settings: Callable[..., Settings]
) -> None:
    async with receiving(secrets={}, answers=[500]) as rx, worker_resources(make_settings) as res:
        endpoint_id, rx.secrets["current"] = await add_endpoint(conn, res.ring, rx.url)
        order_id = await order_with_events(conn, "paid", "fulfilled")

        await run_jobs(res)
        assert [r.type for r in rx.received] == ["order.paid"]  # fulfilled waits behind it
        assert await rows(conn, DELIVERIES) == [
            ("order.paid", "pending", 1),
            ("order.fulfilled", "pending", 0),
        ]
        ((lock, due_in),) = await waiting_jobs(conn)
        assert lock == f"webhook:{endpoint_id}:{order_id}"
        assert 3 < due_in <= RETRY_DELAYS[0]  # the retry is queued for its time

        await run_jobs(res)  # not due yet: nothing is sent
        assert len(rx.received) == 1

        await make_due(conn)
        await run_jobs(res)
    assert [r.type for r in rx.received] == ["order.paid", "order.paid", "order.fulfilled"]
    assert rx.received[0].webhook_id == rx.received[1].webhook_id
    assert rx.received[0].raw == rx.received[1].raw  # the same body at every attempt
    assert rx.received[1].webhook_id != rx.received[2].webhook_id
    assert rx.all_verified()
    assert await rows(conn, ATTEMPTS) == [
        ("order.paid", 1, "retry", 500),
        ("order.paid", 2, "delivered", 200),
        ("order.fulfilled", 1, "delivered", 200),
    ]
    assert await rows(conn, DELIVERIES) == [
        ("order.paid", "delivered", 2),
        ("order.fulfilled", "delivered", 1),
    ]
    assert await waiting_jobs(conn) == []


async def test_a_410_fails_the_event_at_once_and_the_next_one_goes(
    conn: Conn, make_settings: Callable[..., Settings]
) -> None:
    async with receiving(secrets={}, answers=[410]) as rx, worker_resources(make_settings) as res:
        _, rx.secrets["current"] = await add_endpoint(conn, res.ring, rx.url)
        await order_with_events(conn, "paid", "fulfilled")
        await run_jobs(res)
    assert [r.type for r in rx.received] == ["order.paid", "order.fulfilled"]
    assert rx.all_verified()
    assert await rows(conn, ATTEMPTS) == [
        ("order.paid", 1, "failed", 410),
        ("order.fulfilled", 1, "delivered", 200),
    ]
    assert await rows(conn, DELIVERIES) == [
        ("order.paid", "failed", 1),
        ("order.fulfilled", "delivered", 1),
    ]
    assert await waiting_jobs(conn) == []
    assert await scalar(conn, "SELECT bool_and(enabled) FROM webhook_endpoints") is True


async def test_retryable_4xx_and_redirects_are_retried(
    conn: Conn, make_settings: Callable[..., Settings]
) -> None:
    answers: list[Any] = [408, 409, 425, (302, {"Location": "https://example.com/"})]
    async with receiving(secrets={}, answers=answers) as rx, worker_resources(make_settings) as res:
        _, rx.secrets["current"] = await add_endpoint(conn, res.ring, rx.url)
        await order_with_events(conn, "paid")
        for _ in range(5):
            await run_jobs(res)
            await make_due(conn)
    assert [r.type for r in rx.received] == ["order.paid"] * 5  # the redirect not followed
    assert await rows(conn, ATTEMPTS) == [
        ("order.paid", 1, "retry", 408),
        ("order.paid", 2, "retry", 409),
        ("order.paid", 3, "retry", 425),
        ("order.paid", 4, "retry", 302),
        ("order.paid", 5, "delivered", 200),
    ]


async def test_retry_after_is_honoured_when_it_asks_for_longer(
    conn: Conn, make_settings: Callable[..., Settings]
) -> None:
    answers: list[Any] = [(429, {"Retry-After": "120"}), (503, {"Retry-After": "1"})]
    async with receiving(secrets={}, answers=answers) as rx, worker_resources(make_settings) as res:
        _, rx.secrets["current"] = await add_endpoint(conn, res.ring, rx.url)
        await order_with_events(conn, "paid")
        await run_jobs(res)
        ((_, due_in),) = await waiting_jobs(conn)
        assert 110 < due_in <= 120  # 120 s asked, more than the schedule's 5 s
        await make_due(conn)
        await run_jobs(res)
        ((_, due_in),) = await waiting_jobs(conn)
        assert 290 < due_in <= RETRY_DELAYS[1]  # 1 s asked, less than the schedule's 5 min
        next_attempt = await scalar(
            conn,
            "SELECT extract(epoch FROM next_attempt_at - now())::float8 FROM webhook_deliveries",
        )
        assert 290 < next_attempt <= RETRY_DELAYS[1]
    assert len(rx.received) == 2


async def seed_failed_round(conn: Conn, days_ago: float) -> None:
    """The pending delivery's first MAX_ATTEMPTS - 1 attempts, all failed, the first one
    `days_ago` days ago (as the schedule would have made them)."""
    for attempt in range(1, MAX_ATTEMPTS):
        await conn.execute(
            "INSERT INTO webhook_attempts (endpoint_id, message_id, attempt, outcome,"
            " status_code, error, at)"
            " SELECT endpoint_id, message_id, %s, 'retry', 500, 'HTTP 500',"
            "        now() - make_interval(days => %s) + make_interval(hours => %s)"
            "   FROM webhook_deliveries WHERE status = 'pending'"
            "  ORDER BY message_id LIMIT 1",
            (attempt, days_ago, attempt),
        )
    await conn.execute(
        "UPDATE webhook_deliveries SET attempts = %s WHERE message_id ="
        " (SELECT min(message_id) FROM webhook_deliveries WHERE status = 'pending')",
        (MAX_ATTEMPTS - 1,),
    )


async def test_an_endpoint_failing_for_days_is_disabled_and_flagged(
    conn: Conn, make_settings: Callable[..., Settings]
) -> None:
    async with receiving(secrets={}, answers=[500]) as rx, worker_resources(make_settings) as res:
        endpoint_id, rx.secrets["current"] = await add_endpoint(conn, res.ring, rx.url)
        await order_with_events(conn, "paid", "fulfilled")
        await conn.execute("UPDATE webhook_deliveries SET created_at = now() - interval '3 days'")
        await seed_failed_round(conn, days_ago=3)
        await run_jobs(res)
    assert [r.type for r in rx.received] == ["order.paid"]  # the last try; fulfilled waits
    assert (await rows(conn, ATTEMPTS))[-1] == ("order.paid", MAX_ATTEMPTS, "failed", 500)
    assert await rows(conn, DELIVERIES) == [
        ("order.paid", "failed", MAX_ATTEMPTS),
        ("order.fulfilled", "pending", 0),
    ]
    enabled, reason = (
        await rows(
            conn, "SELECT enabled, disabled_reason FROM webhook_endpoints WHERE id = %s",
            endpoint_id,
        )
    )[0]  # fmt: skip
    assert enabled is False
    assert reason.startswith("failing since ") and reason.endswith(": HTTP 500")
    attention = await rows(
        conn, "SELECT reference, why FROM needs_attention WHERE kind = 'webhook endpoint'"
    )
    assert [ref for ref, _ in attention] == [str(endpoint_id)]
    assert await waiting_jobs(conn) == []


async def test_an_endpoint_that_accepts_other_events_is_not_disabled(
    conn: Conn, make_settings: Callable[..., Settings]
) -> None:
    async with receiving(secrets={}, answers=[500]) as rx, worker_resources(make_settings) as res:
        _, rx.secrets["current"] = await add_endpoint(conn, res.ring, rx.url)
        first = await order_with_events(conn, "paid")
        await seed_failed_round(conn, days_ago=3)
        await conn.execute(
            "UPDATE webhook_deliveries SET next_attempt_at = now() + interval '1 hour'"
        )
        await order_with_events(conn, "paid")  # another order's event: delivered (200)
        answers_before = len(rx.answers)
        rx.answers.insert(0, 200)
        await run_jobs(res)
        assert len(rx.answers) == answers_before  # the other order's event took the 200
        await make_due(conn)
        await run_jobs(res)  # the first order's last try: 500
    assert [r.data["orderId"] for r in rx.received][-1] == str(first)
    assert await scalar(conn, "SELECT bool_and(enabled) FROM webhook_endpoints") is True
    assert await scalar(
        conn, "SELECT status FROM webhook_deliveries WHERE order_id = %s", first
    ) == "failed"  # fmt: skip


async def test_a_disabled_endpoint_is_sent_nothing_and_its_events_wait(
    conn: Conn, make_settings: Callable[..., Settings]
) -> None:
    async with receiving(secrets={}) as rx, worker_resources(make_settings) as res:
        endpoint_id, rx.secrets["current"] = await add_endpoint(conn, res.ring, rx.url)
        await order_with_events(conn, "paid")
        await conn.execute(
            "UPDATE webhook_endpoints SET enabled = false, disabled_at = now(),"
            " disabled_reason = 'maintenance' WHERE id = %s",
            (endpoint_id,),
        )
        await run_jobs(res)
        assert rx.received == []
        assert await rows(conn, DELIVERIES) == [("order.paid", "pending", 0)]
        assert await waiting_jobs(conn) == []

        await conn.execute(
            "UPDATE webhook_endpoints SET enabled = true, disabled_at = NULL,"
            " disabled_reason = NULL WHERE id = %s",
            (endpoint_id,),
        )
        await conn.execute(
            "SELECT bitloot_defer_webhook_job(endpoint_id, order_id) FROM webhook_deliveries"
        )
        await run_jobs(res)
    assert [r.type for r in rx.received] == ["order.paid"]
    assert rx.all_verified()


async def test_a_removed_endpoint_is_sent_nothing_and_its_events_fail(
    conn: Conn, make_settings: Callable[..., Settings]
) -> None:
    async with receiving(secrets={}) as rx, worker_resources(make_settings) as res:
        endpoint_id, rx.secrets["current"] = await add_endpoint(conn, res.ring, rx.url)
        await order_with_events(conn, "paid", "fulfilled")
        await conn.execute(
            "UPDATE webhook_endpoints SET removed_at = now() WHERE id = %s", (endpoint_id,)
        )
        await run_jobs(res)
    assert rx.received == []
    assert await rows(
        conn, "SELECT status, last_error, attempts FROM webhook_deliveries"
    ) == [("failed", "endpoint removed", 0)] * 2  # fmt: skip
    assert await scalar(conn, "SELECT count(*) FROM webhook_attempts") == 0
