"""`POST /webhooks/kinguin` over real HTTP to the in-process API (docs/external-apis.md 1.10)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import psycopg
import pytest

from bitloot.fulfillment.kinguin_webhook import MAX_CLOCK_SKEW
from bitloot.fulfillment.service import run_fulfillment
from bitloot.kinguin.models import format_event_time
from bitloot.resources import Resources
from bitloot.sim.app import SimConfig

Conn = psycopg.AsyncConnection[Any]
One = Callable[..., Awaitable[Any]]
SECRET = SimConfig().kinguin_webhook_secret
T0 = datetime(2025, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)


class Hook:
    """Posts events to the API's Kinguin webhook endpoint."""

    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        self.url = url
        self.http = http

    async def post(
        self,
        body: Any = None,
        *,
        event: str | None = "order.status",
        secret: str | None = SECRET,
        raw: bytes | None = None,
    ) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"}
        if event is not None:
            headers["X-Event-Name"] = event
        if secret is not None:
            headers["X-Event-Secret"] = secret
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        async with self.http.post(self.url, data=data, headers=headers) as resp:
            return resp.status, await resp.read()

    async def status(
        self,
        kinguin_order_id: str,
        external_id: uuid.UUID | str | None,
        status: str,
        at: datetime,
        **kwargs: Any,
    ) -> int:
        body = {
            "orderId": kinguin_order_id,
            "orderExternalId": None if external_id is None else str(external_id),
            "status": status,
            "updatedAt": format_event_time(at),
        }
        code, text = await self.post(body, **kwargs)
        assert code != 500, text
        return code


@pytest.fixture
async def hook(api: Any) -> AsyncIterator[Hook]:
    async with aiohttp.ClientSession() as http:
        yield Hook(f"{api.url}/webhooks/kinguin", http)


async def counts(conn: Conn, order_id: uuid.UUID | None = None) -> tuple[int, int]:
    """(webhook_events rows, fulfill_order jobs), for one order or in all."""
    cur = await conn.execute(
        "SELECT (SELECT count(*) FROM webhook_events WHERE provider = 'kinguin'"
        "          AND (%(o)s::uuid IS NULL OR order_id = %(o)s::uuid)),"
        "       (SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'fulfill_order'"
        "          AND (%(o)s::uuid IS NULL OR args->>'order_id' = %(o)s::text))",
        {"o": order_id},
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def events(conn: Conn, order_id: uuid.UUID) -> list[tuple[str, str, bool]]:
    cur = await conn.execute(
        "SELECT event_type, outcome, needs_attention FROM webhook_events"
        " WHERE order_id = %s ORDER BY id",
        (order_id,),
    )
    return [(r[0], r[1], r[2]) for r in await cur.fetchall()]


async def record_kinguin_order(
    conn: Conn, order_id: uuid.UUID, kinguin_order_id: str, *, status: str = "processing"
) -> None:
    """The state after the worker placed and recorded a Kinguin order (no sim needed)."""
    await conn.execute(
        "UPDATE orders SET fulfillment_status = 'processing',"
        " kinguin_placement_started_at = now() WHERE id = %s",
        (order_id,),
    )
    await conn.execute(
        "INSERT INTO kinguin_orders (order_id, kinguin_order_id, status) VALUES (%s, %s, %s)",
        (order_id, kinguin_order_id, status),
    )


# --- authentication and malformed requests -------------------------------------------


async def test_wrong_secret_is_401_and_nothing_is_stored(
    hook: Hook, conn: Conn, paid_order: Any
) -> None:
    order_id = await paid_order()
    for secret in ("wrong-secret", SECRET[:-1], SECRET + "x", "é" + SECRET):
        assert await hook.status("KWRONG", order_id, "completed", T0, secret=secret) == 401
    assert await counts(conn) == (0, 0)


async def test_missing_or_empty_secret_is_401(hook: Hook, conn: Conn, paid_order: Any) -> None:
    order_id = await paid_order()
    assert await hook.status("KNOSECRET", order_id, "completed", T0, secret=None) == 401
    assert await hook.status("KNOSECRET", order_id, "completed", T0, secret="") == 401
    code, body = await hook.post({}, secret=None)
    assert code == 401
    assert SECRET.encode() not in body
    assert await counts(conn) == (0, 0)


async def test_secret_with_bytes_that_are_not_utf8_is_401(api: Any, conn: Conn) -> None:
    # Header values arrive as latin-1/surrogate-escaped text; comparing must not crash (500).
    url = urlsplit(api.url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    body = b'{"orderId": "K1", "status": "completed", "updatedAt": "2025-03-01T12:00:00.000+00:00"}'
    writer.write(
        b"POST /webhooks/kinguin HTTP/1.1\r\n"
        b"Host: 127.0.0.1\r\n"
        b"X-Event-Name: order.status\r\n"
        b"X-Event-Secret: \xff\xfe" + SECRET.encode() + b"\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"Connection: close\r\n\r\n" + body
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert status_line.split()[1] == b"401", status_line
    assert await counts(conn) == (0, 0)


GARBAGE_BODIES = [
    b"",
    b"not json",
    b"[1, 2]",
    b'"a string"',
    b"{",
    # A valid event, but in UTF-16 with a BOM: JSON between systems must be UTF-8.
    '\ufeff{"orderId": "K1", "status": "completed",'
    ' "updatedAt": "2025-03-01T12:00:00.000+00:00"}'.encode("utf-16-le"),
    b'{"orderId": "K1", "status": "completed"}',  # no updatedAt
    b'{"orderId": "K1", "status": "lost", "updatedAt": "2025-03-01T12:00:00.000+00:00"}',
    b'{"orderId": "K1", "status": "completed", "updatedAt": "yesterday"}',
    b'{"orderId": "K1", "status": "completed", "updatedAt": "2025-03-01T12:00:00"}',
    b'{"status": "completed", "updatedAt": "2025-03-01T12:00:00.000+00:00"}',
    b'{"orderId": "K\\u0000", "status": "completed", "updatedAt": "2025-03-01T12:00:00.000+00:00"}',
    b'{"orderId": "K\\ud800", "status": "completed", "updatedAt": "2025-03-01T12:00:00.000+00:00"}',
]


async def test_missing_or_garbage_body_is_400(hook: Hook, conn: Conn) -> None:
    for raw in GARBAGE_BODIES:
        code, body = await hook.post(raw=raw)
        assert code == 400, (raw, body)
    assert await counts(conn) == (0, 0)


async def test_unknown_event_name_is_204_and_changes_nothing(
    hook: Hook, conn: Conn, paid_order: Any
) -> None:
    order_id = await paid_order()
    body = {
        "orderId": "KUNKNOWN01",
        "orderExternalId": str(order_id),
        "status": "completed",
        "updatedAt": format_event_time(T0),
    }
    for event in ("order.unknown", "", None):
        code, text = await hook.post(body, event=event)
        assert (code, text) == (204, b"")
    assert await counts(conn) == (0, 0)
    row = await (await conn.execute("SELECT status, fulfillment_status FROM orders")).fetchone()
    assert row == ("paid", "pending")


async def test_product_update_is_204(hook: Hook, conn: Conn) -> None:
    body = {
        "kinguinId": 10001,
        "productId": "5c9b68662539a4e8f17ae2fe",
        "qty": 0,
        "textQty": 0,
        "cheapestOfferId": [],
        "updatedAt": format_event_time(T0),
    }
    code, text = await hook.post(body, event="product.update")
    assert (code, text) == (204, b"")
    # Stored (tests/catalog covers products we sell); no order, no job.
    assert await counts(conn) == (1, 0)
    cur = await conn.execute("SELECT event_type, outcome FROM webhook_events")
    assert await cur.fetchall() == [("product.update", "unknown_product")]


# --- order.status -----------------------------------------------------------------------


async def test_completed_enqueues_one_job_and_a_duplicate_changes_nothing(
    hook: Hook, conn: Conn, paid_order: Any, one: One
) -> None:
    order_id = await paid_order()
    # The webhook can beat the worker's own record: matched by orderExternalId.
    assert await hook.status("KCOMPLETE01", order_id, "completed", T0) == 204
    assert await counts(conn, order_id) == (1, 1)
    assert await events(conn, order_id) == [
        ("order.status", "fulfillment_enqueued_completed", False)
    ]
    job = await one(
        conn,
        "SELECT queue_name, lock, status FROM procrastinate_jobs WHERE task_name = 'fulfill_order'",
    )
    assert job == ("fulfillment", f"order:{order_id}", "todo")
    stored = await one(conn, "SELECT external_id, raw_body FROM webhook_events")
    assert stored[0] == "KCOMPLETE01"
    assert json.loads(stored[1])["orderExternalId"] == str(order_id)

    # Kinguin retries and duplicates: the same event again is a 204 that does nothing.
    for _ in range(2):
        assert await hook.status("KCOMPLETE01", order_id, "completed", T0) == 204
    assert await counts(conn, order_id) == (1, 1)


async def test_duplicate_of_a_recorded_order_is_ignored(
    hook: Hook, conn: Conn, paid_order: Any, one: One
) -> None:
    order_id = await paid_order()
    await record_kinguin_order(conn, order_id, "KDUP000001")
    assert await hook.status("KDUP000001", None, "completed", T0) == 204
    assert await hook.status("KDUP000001", None, "completed", T0) == 204
    assert await counts(conn, order_id) == (1, 1)
    assert await one(
        conn, "SELECT status, status_updated_at FROM kinguin_orders WHERE order_id = %s", order_id
    ) == ("completed", T0)


async def test_older_event_than_the_watermark_is_stale(
    hook: Hook, conn: Conn, paid_order: Any, one: One
) -> None:
    order_id = await paid_order()
    await record_kinguin_order(conn, order_id, "KSTALE0001")
    assert await hook.status("KSTALE0001", order_id, "completed", T0) == 204
    assert await counts(conn, order_id) == (1, 1)

    # Delivered out of order: an earlier status arrives after the newer one.
    earlier = T0 - timedelta(milliseconds=1)
    assert await hook.status("KSTALE0001", order_id, "processing", earlier) == 204
    assert await hook.status("KSTALE0001", order_id, "canceled", T0 - timedelta(hours=1)) == 204
    assert await counts(conn, order_id) == (3, 1)  # stored, but no second job
    assert [e[1] for e in await events(conn, order_id)] == [
        "fulfillment_enqueued_completed",
        "stale",
        "stale",
    ]
    assert await one(
        conn, "SELECT status, status_updated_at FROM kinguin_orders WHERE order_id = %s", order_id
    ) == ("completed", T0)


async def test_newer_processing_event_advances_the_watermark_without_a_job(
    hook: Hook, conn: Conn, paid_order: Any, one: One
) -> None:
    order_id = await paid_order()
    await record_kinguin_order(conn, order_id, "KPROC00001")
    assert await hook.status("KPROC00001", order_id, "processing", T0) == 204
    assert await counts(conn, order_id) == (1, 0)
    assert await events(conn, order_id) == [("order.status", "noted", False)]
    assert await one(
        conn, "SELECT status_updated_at FROM kinguin_orders WHERE order_id = %s", order_id
    ) == (T0,)


async def test_deprecated_order_complete_is_handled_like_completed(
    hook: Hook, conn: Conn, paid_order: Any, one: One
) -> None:
    order_id = await paid_order()
    await record_kinguin_order(conn, order_id, "KLEGACY001")
    body = {
        "orderId": "KLEGACY001",
        "orderExternalId": str(order_id),
        "updatedAt": format_event_time(T0),
    }
    code, text = await hook.post(body, event="order.complete")
    assert (code, text) == (204, b"")
    assert await counts(conn, order_id) == (1, 1)
    assert await events(conn, order_id) == [
        ("order.complete", "fulfillment_enqueued_completed", False)
    ]
    assert await one(conn, "SELECT status FROM kinguin_orders WHERE order_id = %s", order_id) == (
        "completed",
    )
    # The same completion, reported again as order.status, is a duplicate.
    assert await hook.status("KLEGACY001", order_id, "completed", T0) == 204
    assert await counts(conn, order_id) == (1, 1)


async def test_unknown_order_is_stored_for_attention(hook: Hook, conn: Conn, one: One) -> None:
    stranger = uuid.uuid4()
    assert await hook.status("KNOBODY001", stranger, "completed", T0) == 204
    assert await hook.status("KNOBODY002", "not-a-uuid", "completed", T0) == 204
    assert await hook.status("KNOBODY003", None, "canceled", T0) == 204
    cur = await conn.execute(
        "SELECT external_id, order_id, outcome, needs_attention FROM webhook_events ORDER BY id"
    )
    assert await cur.fetchall() == [
        ("KNOBODY001", stranger, "unknown_order", True),
        ("KNOBODY002", None, "unknown_order", True),
        ("KNOBODY003", None, "unknown_order", True),
    ]
    assert await counts(conn) == (3, 0)


async def test_cancel_after_fulfillment_is_flagged_not_enqueued(
    hook: Hook, conn: Conn, paid_order: Any
) -> None:
    order_id = await paid_order()
    await record_kinguin_order(conn, order_id, "KLATE00001", status="completed")
    await conn.execute(
        "UPDATE orders SET status = 'fulfilled', fulfillment_status = 'fulfilled' WHERE id = %s",
        (order_id,),
    )
    assert await hook.status("KLATE00001", order_id, "refunded", T0) == 204
    assert await counts(conn, order_id) == (1, 0)
    assert await events(conn, order_id) == [("order.status", "order_fulfilled_fulfilled", True)]


async def test_event_for_another_kinguin_order_of_ours_is_flagged(
    hook: Hook, conn: Conn, paid_order: Any, one: One
) -> None:
    # A second Kinguin order carrying our orderExternalId means something bought twice:
    # it must not move the recorded order's status or watermark, and a human must look.
    order_id = await paid_order()
    await record_kinguin_order(conn, order_id, "KRECORDED1")
    assert await hook.status("KRECORDED1", order_id, "processing", T0) == 204
    assert await hook.status("KSTRAY0001", order_id, "canceled", T0 + timedelta(seconds=1)) == 204
    assert await one(
        conn, "SELECT status, status_updated_at FROM kinguin_orders WHERE order_id = %s", order_id
    ) == ("processing", T0)
    assert (await events(conn, order_id))[-1] == ("order.status", "other_kinguin_order", True)
    assert await counts(conn, order_id) == (2, 0)


# --- events dated in the future (issue 13, item 5) -----------------------------------


def now_ms() -> datetime:
    """Now, to the millisecond a Kinguin updatedAt carries."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


async def watermark(conn: Conn, one: One, order_id: uuid.UUID) -> tuple[str, datetime | None]:
    row = await one(
        conn, "SELECT status, status_updated_at FROM kinguin_orders WHERE order_id = %s", order_id
    )
    return row[0], row[1]


async def test_a_far_future_event_does_not_make_the_real_one_stale(
    hook: Hook, conn: Conn, paid_order: Any, one: One
) -> None:
    order_id = await paid_order()
    await record_kinguin_order(conn, order_id, "KFUTURE001")
    far = datetime.now(UTC) + timedelta(days=365)
    assert await hook.status("KFUTURE001", order_id, "processing", far) == 204
    # Stored and flagged; the watermark stays unset.
    assert await events(conn, order_id) == [("order.status", "future_timestamp", True)]
    assert await watermark(conn, one, order_id) == ("processing", None)
    assert await counts(conn, order_id) == (1, 0)

    real = now_ms()
    assert await hook.status("KFUTURE001", order_id, "completed", real) == 204
    assert (await events(conn, order_id))[-1] == (
        "order.status",
        "fulfillment_enqueued_completed",
        False,
    )
    assert await watermark(conn, one, order_id) == ("completed", real)
    assert await counts(conn, order_id) == (2, 1)


async def test_a_far_future_completion_is_flagged_and_still_a_hint_for_the_job(
    hook: Hook, conn: Conn, paid_order: Any, one: One
) -> None:
    order_id = await paid_order()
    await record_kinguin_order(conn, order_id, "KFUTURE002")
    far = datetime.now(UTC) + timedelta(days=365)
    assert await hook.status("KFUTURE002", order_id, "completed", far) == 204
    # The job re-reads the order from Kinguin: queued as for a correctly dated completion.
    assert await events(conn, order_id) == [("order.status", "future_timestamp", True)]
    assert await counts(conn, order_id) == (1, 1)
    assert await watermark(conn, one, order_id) == ("processing", None)


async def test_an_event_within_the_clock_skew_is_the_watermark(
    hook: Hook, conn: Conn, paid_order: Any, one: One
) -> None:
    order_id = await paid_order()
    await record_kinguin_order(conn, order_id, "KSKEW00001")
    ahead = now_ms() + MAX_CLOCK_SKEW - timedelta(minutes=1)
    assert await hook.status("KSKEW00001", order_id, "processing", ahead) == 204
    assert await events(conn, order_id) == [("order.status", "noted", False)]
    assert await watermark(conn, one, order_id) == ("processing", ahead)


async def test_a_watermark_stored_in_the_future_is_replaced_by_a_real_event(
    hook: Hook, conn: Conn, paid_order: Any, one: One
) -> None:
    # Stored before future dates were refused: it must not keep real events out.
    order_id = await paid_order()
    await record_kinguin_order(conn, order_id, "KPOISON001")
    await conn.execute(
        "UPDATE kinguin_orders SET status_updated_at = now() + interval '1 year'"
        " WHERE order_id = %s",
        (order_id,),
    )
    real = now_ms()
    assert await hook.status("KPOISON001", order_id, "completed", real) == 204
    assert await events(conn, order_id) == [
        ("order.status", "fulfillment_enqueued_completed", False)
    ]
    assert await watermark(conn, one, order_id) == ("completed", real)
    assert await counts(conn, order_id) == (1, 1)


# --- canceled, end to end: the sim's own webhook, then the worker ---------------------


async def test_canceled_order_ends_fulfillment_in_failed(
    hook: Hook,
    conn: Conn,
    paid_order: Any,
    runtime: Resources,
    sim_ctl: Any,
    one: One,
    eventually: Callable[..., Awaitable[None]],
) -> None:
    await sim_ctl.call("POST", "/delivery", {"delay": 0.3})
    await sim_ctl.call("POST", "/faults/outcomes", {"outcomes": ["canceled"]})
    order_id = await paid_order()

    await run_fulfillment(runtime, order_id)  # buys; no keys yet: a poll is scheduled
    (kinguin_order_id,) = await one(
        conn, "SELECT kinguin_order_id FROM kinguin_orders WHERE order_id = %s", order_id
    )
    assert await one(conn, "SELECT fulfillment_status FROM orders WHERE id = %s", order_id) == (
        "processing",
    )
    _, jobs_before = await counts(conn, order_id)

    async def webhook_applied() -> bool:
        cur = await conn.execute(
            "SELECT outcome FROM webhook_events WHERE external_id = %s", (kinguin_order_id,)
        )
        return [r[0] for r in await cur.fetchall()] == ["fulfillment_enqueued_canceled"]

    # The simulator cancels the order and posts `order.status` to the API by itself.
    await eventually(webhook_applied)
    assert await counts(conn, order_id) == (1, jobs_before + 1)

    await run_fulfillment(runtime, order_id)  # what the enqueued job does
    status, error = await one(
        conn, "SELECT fulfillment_status, fulfillment_error FROM orders WHERE id = %s", order_id
    )
    assert status == "failed"
    assert "canceled" in error
    assert kinguin_order_id in error
    assert await one(conn, "SELECT status FROM kinguin_orders WHERE order_id = %s", order_id) == (
        "canceled",
    )
    assert await one(
        conn,
        "SELECT count(*) FROM key_delivery_logs WHERE order_id = %s",
        order_id,
    ) == (0,)
    assert len(await sim_ctl.orders(order_id)) == 1
    # The customer learns it once: keys or a refund will follow (no link, no key).
    await run_fulfillment(runtime, order_id)  # a duplicated job changes nothing
    assert await one(
        conn,
        "SELECT array_agg(kind), bool_and(details = '{}') FROM email_outbox WHERE order_id = %s",
        order_id,
    ) == (["undeliverable"], True)
