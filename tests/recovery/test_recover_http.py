"""`POST /orders/recover` over real HTTP against the in-process API and a fresh PostgreSQL:
one answer for every address, the right orders listed, rate limits, the audit trail."""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
import psycopg
import pytest
from recovery_support import (
    ACCEPTED_BODY,
    Conn,
    fulfilled_order,
    listed_orders,
    paid_order,
    recover,
    recovery_emails,
    refunded_order,
    requests_audit,
    rows,
    served_api,
)
from structlog.testing import capture_logs

from bitloot.config import Settings
from bitloot.recovery.routes import RESPONSE_FLOOR_SECONDS
from bitloot.vault.crypto import MasterKeyRing

NO_LIMITS = {
    "rate_limit_recover_per_email_per_hour": 0,
    "rate_limit_recover_per_address_per_hour": 0,
}
# Headers that differ between any two answers by nature.
PER_RESPONSE = {"date", "x-request-id"}


def comparable(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower() not in PER_RESPONSE}


async def test_a_known_and_an_unknown_address_get_the_same_answer(
    make_settings: Callable[..., Settings],
    api_port: int,
    conn: Conn,
    ring: MasterKeyRing,
    http: aiohttp.ClientSession,
) -> None:
    older = await fulfilled_order(conn, ring, "ada@example.com")
    # The same address, typed otherwise:
    newer = await fulfilled_order(conn, ring, "ADA@Example.com")
    not_listed = [
        await refunded_order(conn, ring, "ada@example.com"),
        await fulfilled_order(conn, ring, "ada@example.com", key_status="expired"),
        await fulfilled_order(conn, ring, "ada@example.com", expires_in="-1 minute"),
        await fulfilled_order(conn, ring, "ada@example.com", key_status="deleted"),
        await fulfilled_order(conn, ring, "ada@example.com", revoked="replaced"),
        await paid_order(conn, "ada@example.com"),
        await fulfilled_order(conn, ring, "bob@example.com"),
        await fulfilled_order(conn, ring, "ada@example.org"),
    ]

    async with served_api(make_settings, api_port, **NO_LIMITS) as api:
        known = await recover(http, api.url, {"email": " Ada@EXAMPLE.com"})
        unknown = await recover(http, api.url, {"email": "nobody@example.com"})

    assert known.status == unknown.status == 202
    assert known.body == unknown.body == ACCEPTED_BODY
    assert comparable(known.headers) == comparable(unknown.headers)
    assert known.headers["Content-Type"].startswith("application/json")
    assert known.headers["Cache-Control"] == "no-store"

    # What really happened is in the audit rows, and only the known address gets an email.
    assert await requests_audit(conn) == [
        ("ada@example.com", "127.0.0.1", "sent", 2),
        ("nobody@example.com", "127.0.0.1", "no_orders", 0),
    ]
    (request_id,) = [r[0] for r in await rows(conn, "SELECT id FROM recovery_requests LIMIT 1")]
    assert await listed_orders(conn, request_id) == {older, newer}
    ((outbox_id, to_address, for_request),) = await recovery_emails(conn)
    assert for_request == request_id
    assert to_address == "ADA@Example.com"  # as the newest listed order has it
    jobs = await rows(
        conn,
        "SELECT args FROM procrastinate_jobs WHERE task_name = 'send_delivery_email'"
        " AND (args->>'outbox_id')::bigint = %s",
        outbox_id,
    )
    assert len(jobs) == 1

    # The listed orders' timelines show the request; the others' do not.
    for order_id, expected in [(older, 1), (newer, 1), *((o, 0) for o in not_listed)]:
        found = await rows(
            conn,
            "SELECT what FROM fulfillment_timeline WHERE order_id = %s AND source = 'recovery'",
            order_id,
        )
        assert len(found) == expected, order_id
        if expected:
            assert found[0][0] == f"recovery request {request_id}: fresh link sent"


async def test_one_email_lists_the_newest_orders_only(
    make_settings: Callable[..., Settings],
    api_port: int,
    conn: Conn,
    ring: MasterKeyRing,
    http: aiohttp.ClientSession,
) -> None:
    orders = [await fulfilled_order(conn, ring, "many@example.com") for _ in range(23)]
    async with served_api(make_settings, api_port, **NO_LIMITS) as api:
        answer = await recover(http, api.url, {"email": "many@example.com"})
    assert answer.status == 202
    assert await requests_audit(conn) == [("many@example.com", "127.0.0.1", "sent", 20)]
    (request_id,) = [r[0] for r in await rows(conn, "SELECT id FROM recovery_requests")]
    assert await listed_orders(conn, request_id) == set(orders[-20:])
    assert len(await recovery_emails(conn)) == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("{not json", 400),
        ({"email": "not-an-address"}, 422),
        ({"email": "a@localhost"}, 422),
        ({"email": "x" * 300 + "@example.com"}, 422),
        ({"email": ""}, 422),
        ({"email": 5}, 422),
        ({}, 422),
        (["ada@example.com"], 422),
        ({"email": "ada@example.com", "orderId": "x"}, 422),
        ({"email": "x" * 70_000 + "@example.com"}, 413),
    ],
    ids=[
        "not-json",
        "no-at",
        "no-domain",
        "too-long",
        "empty",
        "number",
        "missing",
        "array",
        "extra-field",
        "over-body-limit",
    ],
)
async def test_bad_input_gets_a_problem_and_records_nothing(
    make_settings: Callable[..., Settings],
    api_port: int,
    conn: Conn,
    ring: MasterKeyRing,
    http: aiohttp.ClientSession,
    body: Any,
    status: int,
) -> None:
    await fulfilled_order(conn, ring, "ada@example.com")
    async with served_api(make_settings, api_port, **NO_LIMITS) as api:
        answer = await recover(http, api.url, body)
    assert answer.status == status, answer.body
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    assert answer.body["status"] == status
    if status == 422:
        assert answer.body["errors"], answer.body
    assert await requests_audit(conn) == []
    assert await recovery_emails(conn) == []


async def test_past_the_per_email_limit_the_answer_is_the_same_and_no_email_goes(
    make_settings: Callable[..., Settings],
    api_port: int,
    conn: Conn,
    ring: MasterKeyRing,
    http: aiohttp.ClientSession,
) -> None:
    await fulfilled_order(conn, ring, "ada@example.com")
    async with served_api(
        make_settings,
        api_port,
        rate_limit_recover_per_email_per_hour=2,
        rate_limit_recover_per_address_per_hour=0,
    ) as api:
        # The limit is per address, whatever its case.
        answers = [
            await recover(http, api.url, {"email": email})
            for email in ("ada@example.com", "Ada@Example.com", "ADA@EXAMPLE.COM")
        ]
        other = await recover(http, api.url, {"email": "nobody@example.com"})
    for answer in [*answers, other]:
        assert answer.status == 202
        assert answer.body == ACCEPTED_BODY
        assert comparable(answer.headers) == comparable(answers[0].headers)
    assert await requests_audit(conn) == [
        ("ada@example.com", "127.0.0.1", "sent", 1),
        ("ada@example.com", "127.0.0.1", "sent", 1),
        ("ada@example.com", "127.0.0.1", "rate_limited", 0),
        ("nobody@example.com", "127.0.0.1", "no_orders", 0),
    ]
    assert len(await recovery_emails(conn)) == 2
    (limited,) = await rows(conn, "SELECT id FROM recovery_requests WHERE outcome = 'rate_limited'")
    assert await listed_orders(conn, limited[0]) == set()


async def test_past_the_per_client_limit_the_answer_is_429(
    make_settings: Callable[..., Settings],
    api_port: int,
    conn: Conn,
    ring: MasterKeyRing,
    http: aiohttp.ClientSession,
) -> None:
    await fulfilled_order(conn, ring, "ada@example.com")
    async with served_api(
        make_settings,
        api_port,
        rate_limit_recover_per_email_per_hour=0,
        rate_limit_recover_per_address_per_hour=3,
    ) as api:
        # Bad input counts too: the client is counted before its body is read.
        bad = await recover(http, api.url, {"email": "nope"})
        first = await recover(http, api.url, {"email": "nobody@example.com"})
        second = await recover(http, api.url, {"email": "ada@example.com"})
        refused_known = await recover(http, api.url, {"email": "ada@example.com"})
        refused_unknown = await recover(http, api.url, {"email": "nobody@example.com"})
    assert (bad.status, first.status, second.status) == (422, 202, 202)
    for refused in (refused_known, refused_unknown):
        assert refused.status == 429
        assert refused.headers["Content-Type"].startswith("application/problem+json")
        retry_after = int(refused.headers["Retry-After"])
        # One request per 20 minutes at 3 an hour.
        assert 0 < retry_after <= 1200
        assert refused.body["retryAfter"] == retry_after
    assert refused_known.body["detail"] == refused_unknown.body["detail"]
    # A refused client is not recorded (its rows are bounded by the limit).
    assert await requests_audit(conn) == [
        ("nobody@example.com", "127.0.0.1", "no_orders", 0),
        ("ada@example.com", "127.0.0.1", "sent", 1),
    ]


async def test_known_and_unknown_addresses_take_the_same_time(
    make_settings: Callable[..., Settings],
    api_port: int,
    conn: Conn,
    ring: MasterKeyRing,
    http: aiohttp.ClientSession,
) -> None:
    for _ in range(3):
        await fulfilled_order(conn, ring, "ada@example.com")
    known: list[float] = []
    unknown: list[float] = []
    async with served_api(make_settings, api_port, **NO_LIMITS) as api:
        await recover(http, api.url, {"email": "warm@example.com"})  # first-use costs
        for i in range(6):
            a = await recover(http, api.url, {"email": "ada@example.com"})
            b = await recover(http, api.url, {"email": f"nobody{i}@example.com"})
            assert a.status == b.status == 202
            known.append(a.seconds)
            unknown.append(b.seconds)
    assert min(known + unknown) >= RESPONSE_FLOOR_SECONDS
    # The floor hides the known path's extra work (about a millisecond).
    assert abs(statistics.median(known) - statistics.median(unknown)) < 0.03, (known, unknown)
    outcomes = await rows(conn, "SELECT outcome, count(*) FROM recovery_requests GROUP BY 1")
    assert dict(outcomes) == {"sent": 6, "no_orders": 7}


async def test_logs_never_name_the_address(
    make_settings: Callable[..., Settings],
    api_port: int,
    conn: Conn,
    ring: MasterKeyRing,
    http: aiohttp.ClientSession,
) -> None:
    await fulfilled_order(conn, ring, "ada@example.com")
    async with served_api(make_settings, api_port, **NO_LIMITS) as api:
        with capture_logs() as logs:
            await recover(http, api.url, {"email": "ada@example.com"})
            await recover(http, api.url, {"email": "nobody@example.com"})
    requested = [e for e in logs if e["event"] == "recovery.requested"]
    assert [(e["outcome"], e["order_count"]) for e in requested] == [
        ("sent", 1),
        ("no_orders", 0),
    ]
    assert all(isinstance(e["recovery_request_id"], int) for e in requested)
    text = repr(logs).lower()
    assert "ada@example" not in text
    assert "nobody@example" not in text


async def test_the_audit_rows_are_append_only(
    make_settings: Callable[..., Settings],
    api_port: int,
    conn: Conn,
    ring: MasterKeyRing,
    http: aiohttp.ClientSession,
) -> None:
    await fulfilled_order(conn, ring, "ada@example.com")
    async with served_api(make_settings, api_port, **NO_LIMITS) as api:
        await recover(http, api.url, {"email": "ada@example.com"})
    for sql in (
        "UPDATE recovery_requests SET outcome = 'no_orders'",
        "DELETE FROM recovery_requests",
        "DELETE FROM recovery_request_orders",
        "UPDATE recovery_request_orders SET order_id = %s",
    ):
        with pytest.raises(psycopg.Error):
            await conn.execute(sql, (uuid.uuid4(),) if "%s" in sql else None)
    assert await requests_audit(conn) == [("ada@example.com", "127.0.0.1", "sent", 1)]
