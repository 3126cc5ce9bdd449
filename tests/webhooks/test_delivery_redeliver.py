"""An admin sends events again: one event (any state) or every failed delivery since a
time, through `POST /admin/webhook-endpoints/{id}/redeliver` and `bitloot webhooks
redeliver`; the deliveries go back to pending with their attempts kept and a new round of
the schedule, the jobs are queued (a job waiting for a later retry is made due now), and
the action is audited."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from endpoints_support import bitloot, ok
from harness import Served, serve_app
from webhook_delivery_support import (
    add_endpoint,
    order_with_events,
    receiving,
    rows,
    run_jobs,
    scalar,
    worker_resources,
)

from bitloot.auth.tokens import mint_user_token
from bitloot.config import Settings
from bitloot.server import build_app

Conn = psycopg.AsyncConnection[Any]


@pytest.fixture
async def admin_api(make_settings: Callable[..., Settings]) -> AsyncIterator[Served]:
    served = await serve_app(await build_app(make_settings()))
    yield served
    await served.runner.cleanup()


async def post(
    api: Served, settings: Settings, endpoint_id: uuid.UUID | str, body: dict[str, Any]
) -> tuple[int, Any]:
    token = mint_user_token(settings, sub="admin-7", admin=True)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{api.url}/admin/webhook-endpoints/{endpoint_id}/redeliver",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        ) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


async def test_one_event_is_sent_again_with_the_same_id_and_audited(
    conn: Conn, make_settings: Callable[..., Settings], admin_api: Served
) -> None:
    async with receiving(secrets={}) as rx, worker_resources(make_settings) as res:
        endpoint_id, rx.secrets["current"] = await add_endpoint(conn, res.ring, rx.url)
        await order_with_events(conn, "paid")
        await run_jobs(res)
        (first,) = rx.received

        status, body = await post(
            admin_api, make_settings(), endpoint_id, {"messageId": first.webhook_id}
        )
        assert (status, body) == (202, {"endpointId": str(endpoint_id), "redelivered": 1})
        assert await rows(conn, "SELECT status, attempts FROM webhook_deliveries") == [
            ("pending", 1)
        ]
        await run_jobs(res)
    assert [r.webhook_id for r in rx.received] == [first.webhook_id] * 2
    assert rx.all_verified()
    assert await rows(conn, "SELECT attempt, outcome FROM webhook_attempts ORDER BY id") == [
        (1, "delivered"),
        (2, "delivered"),
    ]
    (audit,) = await rows(
        conn, "SELECT admin_id, action, reason, details FROM admin_audit_log"
        " WHERE action = 'webhook_endpoint.redeliver'",
    )  # fmt: skip
    assert audit[:3] == ("admin-7", "webhook_endpoint.redeliver", "webhook redelivery")
    assert audit[3]["messageId"] == first.webhook_id and audit[3]["redelivered"] == 1


async def test_failed_events_since_a_time_are_sent_again_in_a_new_round(
    conn: Conn, make_settings: Callable[..., Settings], admin_api: Served, tmp_path: Path,
    db_url: str,
) -> None:  # fmt: skip
    async with (
        receiving(secrets={}, answers=[410, 410, 410]) as rx,
        worker_resources(make_settings) as res,
    ):
        endpoint_id, rx.secrets["current"] = await add_endpoint(conn, res.ring, rx.url)
        old = await order_with_events(conn, "paid")
        await run_jobs(res)
        cut = datetime.now(UTC)
        await order_with_events(conn, "paid", "fulfilled")
        await run_jobs(res)
        assert await scalar(
            conn, "SELECT count(*) FROM webhook_deliveries WHERE status = 'failed'"
        ) == 3  # fmt: skip

        since_cut = {"since": cut.isoformat()}
        status, body = await post(admin_api, make_settings(), endpoint_id, since_cut)
        assert (status, body) == (202, {"endpointId": str(endpoint_id), "redelivered": 2})
        await run_jobs(res)
        assert [r.type for r in rx.received[3:]] == ["order.paid", "order.fulfilled"]
        assert str(old) not in {r.data["orderId"] for r in rx.received[3:]}

        # The CLI: the old order's event too (everything failed since an hour ago).
        since = (cut - timedelta(hours=1)).isoformat()
        out = ok(bitloot(tmp_path, db_url, None, "webhooks", "redeliver", str(endpoint_id),
                         "--since", since))  # fmt: skip
        assert "redelivering  1 event(s)" in out
        await run_jobs(res)
    assert [r.data["orderId"] for r in rx.received[5:]] == [str(old)]
    assert rx.all_verified()
    assert await scalar(
        conn, "SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'"
    ) == 3  # fmt: skip
    actors = await rows(
        conn, "SELECT admin_id FROM admin_audit_log WHERE action = 'webhook_endpoint.redeliver'"
        " ORDER BY id",
    )  # fmt: skip
    assert actors[0] == ("admin-7",) and actors[1][0].startswith("cli:")


async def test_a_redelivery_makes_a_waiting_retry_due_now(
    conn: Conn, make_settings: Callable[..., Settings], tmp_path: Path, db_url: str
) -> None:
    async with receiving(secrets={}, answers=[500]) as rx, worker_resources(make_settings) as res:
        endpoint_id, rx.secrets["current"] = await add_endpoint(conn, res.ring, rx.url)
        await order_with_events(conn, "paid")
        await run_jobs(res)  # 500: retry in 5 s, its job scheduled then
        msg_id = rx.received[0].webhook_id
        out = ok(bitloot(tmp_path, db_url, None, "webhooks", "redeliver", str(endpoint_id),
                         "--message", msg_id, "--reason", "receiver fixed"))  # fmt: skip
        assert "redelivering  1 event(s)" in out
        await run_jobs(res)  # due now: no waiting the 5 s
    assert [r.webhook_id for r in rx.received] == [msg_id] * 2
    assert await rows(conn, "SELECT status, attempts FROM webhook_deliveries") == [("delivered", 2)]


async def test_unknown_endpoint_or_event_is_404_and_a_bad_body_422(
    conn: Conn, make_settings: Callable[..., Settings], admin_api: Served
) -> None:
    settings = make_settings()
    async with worker_resources(make_settings) as res:
        endpoint_id, _ = await add_endpoint(conn, res.ring, "https://example.com/hooks")
    missing = "msg_" + "0" * 32
    assert (await post(admin_api, settings, uuid.uuid4(), {"messageId": missing}))[0] == 404
    assert (await post(admin_api, settings, "not-a-uuid", {"messageId": missing}))[0] == 404
    assert (await post(admin_api, settings, endpoint_id, {"messageId": missing}))[0] == 404
    for bad in (
        {},
        {"messageId": missing, "since": "2025-01-01T00:00:00Z"},
        {"since": "2025-01-01T00:00:00"},  # no offset
        {"messageId": "msg_1"},
    ):
        status, body = await post(admin_api, settings, endpoint_id, bad)
        assert status == 422, json.dumps(body)
    assert await scalar(conn, "SELECT count(*) FROM admin_audit_log") == 0
