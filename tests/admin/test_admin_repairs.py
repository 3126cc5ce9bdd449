"""Retry of a failed fulfillment and resend of the delivery email: each one transaction
with its job and its audit row, or a 409 that writes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import psycopg
import pytest
from admin_support import (
    ADMIN_SUB,
    FAILED_REASON,
    Conn,
    Tokens,
    failed_order,
    fulfilled_order,
    paid_order,
    request,
    side_effects,
)

from bitloot.auth.order_tokens import mint_order_token


async def _one(conn: Conn, sql: str, *params: Any) -> tuple[Any, ...]:
    rows = await (await conn.execute(sql, params)).fetchall()
    assert len(rows) == 1, rows
    return rows[0]


def _retry_url(api: Any, order_id: uuid.UUID | str) -> str:
    return f"{api.url}/admin/orders/{order_id}/fulfillment/retry"


def _resend_url(api: Any, order_id: uuid.UUID | str) -> str:
    return f"{api.url}/admin/orders/{order_id}/delivery-email/resend"


async def test_retry_puts_a_failed_fulfillment_back_in_the_queue(
    api: Any, conn: Conn, http: aiohttp.ClientSession, tokens: Tokens
) -> None:
    order_id = await failed_order(conn, kinguin_polls=11)
    reason = "Kinguin says the product is back in stock"

    status, body = await request(
        http, "POST", _retry_url(api, order_id), headers=tokens.admin, json={"reason": reason}
    )

    assert status == 202, body
    assert body == {"orderId": str(order_id), "fulfillmentStatus": "pending"}
    assert await _one(
        conn, "SELECT fulfillment_status, fulfillment_error FROM orders WHERE id = %s", order_id
    ) == ("pending", None)
    assert await _one(conn, "SELECT polls FROM kinguin_orders WHERE order_id = %s", order_id) == (
        0,
    )
    assert await _one(
        conn,
        "SELECT task_name, status::text, lock, args->>'order_id' FROM procrastinate_jobs",
    ) == ("fulfill_order", "todo", f"order:{order_id}", str(order_id))
    admin_id, action, audit_reason, details = await _one(
        conn,
        "SELECT admin_id, action, reason, details FROM admin_audit_log WHERE order_id = %s",
        order_id,
    )
    assert (admin_id, action, audit_reason) == (ADMIN_SUB, "fulfillment.retry", reason)
    assert details["previousError"] == FAILED_REASON
    assert details["kinguinOrderId"] == f"KG-{order_id.hex[:8]}"
    assert await _one(
        conn,
        "SELECT from_status, to_status, actor, reason FROM order_events"
        " WHERE order_id = %s AND machine = 'fulfillment' ORDER BY id DESC LIMIT 1",
        order_id,
    ) == ("failed", "pending", f"admin:{ADMIN_SUB}", reason)


async def test_retry_without_a_kinguin_order_still_queues_the_job(
    api: Any, conn: Conn, http: aiohttp.ClientSession, tokens: Tokens
) -> None:
    order_id = await failed_order(conn)
    status, body = await request(
        http, "POST", _retry_url(api, order_id), headers=tokens.admin, json={"reason": "again"}
    )
    assert status == 202, body
    assert await _one(conn, "SELECT count(*) FROM procrastinate_jobs") == (1,)
    assert await _one(conn, "SELECT details->'kinguinOrderId' FROM admin_audit_log") == (None,)


async def test_retry_of_an_order_that_has_not_failed_is_409_and_writes_nothing(
    api: Any, conn: Conn, http: aiohttp.ClientSession, tokens: Tokens
) -> None:
    for order_id, state in [
        (await paid_order(conn), ("paid", "pending")),
        (await fulfilled_order(conn), ("fulfilled", "fulfilled")),
    ]:
        before = await side_effects(conn, order_id)
        status, problem = await request(
            http, "POST", _retry_url(api, order_id), headers=tokens.admin, json={"reason": "x"}
        )
        assert status == 409, problem
        assert (problem["orderStatus"], problem["fulfillmentStatus"]) == state
        assert await side_effects(conn, order_id) == before


async def test_an_admin_action_needs_a_reason(
    api: Any, conn: Conn, http: aiohttp.ClientSession, tokens: Tokens
) -> None:
    order_id = await failed_order(conn)
    before = await side_effects(conn, order_id)
    for body in ({}, {"reason": "   "}, {"reason": "x" * 501}, {"why": "x"}):
        for url in (_retry_url(api, order_id), _resend_url(api, order_id)):
            status, problem = await request(http, "POST", url, headers=tokens.admin, json=body)
            assert status == 422, (body, problem)
    assert await side_effects(conn, order_id) == before


async def test_actions_on_an_unknown_order_are_404(
    api: Any, http: aiohttp.ClientSession, tokens: Tokens
) -> None:
    for order_id in (uuid.uuid4(), "nope"):
        for url in (_retry_url(api, order_id), _resend_url(api, order_id)):
            status, problem = await request(
                http, "POST", url, headers=tokens.admin, json={"reason": "x"}
            )
            assert status == 404, problem


async def test_resend_queues_the_next_email_generation(
    api: Any, conn: Conn, http: aiohttp.ClientSession, tokens: Tokens
) -> None:
    order_id = await fulfilled_order(conn)
    reason = "customer says the first email never arrived"
    first_email_link = await mint_order_token(conn, order_id, purpose="email")
    checkout = await mint_order_token(conn, order_id, purpose="checkout")

    status, body = await request(
        http, "POST", _resend_url(api, order_id), headers=tokens.admin, json={"reason": reason}
    )

    assert status == 202, body
    outbox_id, generation, email_status = await _one(
        conn,
        "SELECT id, generation, status FROM email_outbox WHERE order_id = %s AND generation > 1",
        order_id,
    )
    assert body == {
        "orderId": str(order_id),
        "outboxId": outbox_id,
        "generation": 2,
        "revokedLinks": 1,
    }
    # The first email's link (it may have gone astray) no longer opens the order; the
    # token POST /orders gave the buyer's browser still does.
    order_url = f"{api.url}/orders/{order_id}"
    for token, expected in ((first_email_link, 401), (checkout, 200)):
        headers = {"Authorization": f"Bearer {token}"}
        assert (await request(http, "GET", order_url, headers=headers))[0] == expected
    assert (generation, email_status) == (2, "pending")
    assert await _one(
        conn, "SELECT task_name, status::text, (args->>'outbox_id')::bigint FROM procrastinate_jobs"
    ) == ("send_delivery_email", "todo", outbox_id)
    audit = await _one(
        conn,
        "SELECT admin_id, action, reason, details FROM admin_audit_log WHERE order_id = %s",
        order_id,
    )
    assert audit == (
        ADMIN_SUB,
        "delivery_email.resend",
        reason,
        {"outboxId": outbox_id, "generation": 2, "revokedLinks": 1},
    )


async def test_resend_for_an_unfulfilled_order_is_409_and_writes_nothing(
    api: Any, conn: Conn, http: aiohttp.ClientSession, tokens: Tokens
) -> None:
    order_id = await failed_order(conn)
    before = await side_effects(conn, order_id)
    status, problem = await request(
        http, "POST", _resend_url(api, order_id), headers=tokens.admin, json={"reason": "x"}
    )
    assert status == 409, problem
    assert (problem["orderStatus"], problem["fulfillmentStatus"]) == ("paid", "failed")
    assert await side_effects(conn, order_id) == before


async def test_the_admin_audit_log_is_append_only(conn: Conn) -> None:
    await conn.execute(
        "INSERT INTO admin_audit_log (admin_id, action, reason) VALUES ('a', 'x', 'why')"
    )
    for statement in (
        "UPDATE admin_audit_log SET reason = 'rewritten'",
        "DELETE FROM admin_audit_log",
    ):
        with pytest.raises(psycopg.DatabaseError) as raised:
            await conn.execute(statement)
        assert raised.value.sqlstate == "BL002"
