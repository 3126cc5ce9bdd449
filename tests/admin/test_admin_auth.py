"""Every admin endpoint: no token 401, a customer or an order token 403, an admin allowed.

The admin call comes last, so its success also shows the refused calls changed nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from admin_support import (
    Conn,
    Tokens,
    failed_order,
    fulfilled_order,
    insert_payment,
    request,
    side_effects,
)

# (method, path template, body, the admin's expected status, the order the path names)
Setup = Callable[[Conn], Awaitable[uuid.UUID]]
ENDPOINTS: dict[str, tuple[str, str, Any, int, Setup]] = {
    "list_payments": ("GET", "/admin/payments", None, 200, fulfilled_order),
    "get_payment": ("GET", "/admin/payments/pay-1", None, 200, fulfilled_order),
    "timeline": ("GET", "/admin/orders/{id}/fulfillment", None, 200, fulfilled_order),
    "retry": (
        "POST",
        "/admin/orders/{id}/fulfillment/retry",
        {"reason": "Kinguin restocked"},
        202,
        failed_order,
    ),
    "resend": (
        "POST",
        "/admin/orders/{id}/delivery-email/resend",
        {"reason": "customer lost the email"},
        202,
        fulfilled_order,
    ),
}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_only_an_admin_token_opens_the_admin_endpoint(
    endpoint: str, api: Any, conn: Conn, http: aiohttp.ClientSession, tokens: Tokens
) -> None:
    method, template, body, admin_status, setup = ENDPOINTS[endpoint]
    order_id = await setup(conn)
    await insert_payment(conn, order_id, "pay-1")
    url = api.url + template.format(id=order_id)
    before = await side_effects(conn, order_id)

    for headers, expected in [
        ({}, 401),
        ({"Authorization": "Bearer not-a-jwt"}, 401),
        (tokens.customer, 403),
        (await tokens.order(order_id), 403),
    ]:
        status, problem = await request(http, method, url, headers=headers, json=body)
        assert (status, problem["status"]) == (expected, expected), (headers, problem)
    assert await side_effects(conn, order_id) == before

    status, answer = await request(http, method, url, headers=tokens.admin, json=body)
    assert status == admin_status, answer
