"""Outbound webhooks across a worker crash, with real processes: a worker is SIGKILLed while
its webhook request is in flight (the receiver stalls its first answer), another worker
takes over (the stalled-job sweeper runs the job again). The receiver, checking every
request with the `standardwebhooks` library, gets every event, each verified, the same
webhook-id again for the one whose outcome was lost, and the attempt rows stay gapless."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import aiohttp
import psycopg
from aiohttp import web
from harness import serve_app
from stack import Stack
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from bitloot.sim.kinguin_catalog import TEXT_PRODUCT_ID
from bitloot.vault.crypto import MasterKeyRing
from bitloot.webhooks.secrets import new_secret, to_whsec, wrap

STALL_SECONDS = 8.0


def add_endpoint(stack: Stack, url: str) -> str:
    """An endpoint row with a secret wrapped by the stack's master key; its whsec."""
    ring = MasterKeyRing.parse(stack.master_keys)
    secret = new_secret()
    with psycopg.connect(stack.db_url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO webhook_endpoints (url, created_by) VALUES (%s, 'test') RETURNING id",
            (url,),
        ).fetchone()
        assert row is not None
        endpoint_id: uuid.UUID = row[0]
        wrapped = wrap(ring, endpoint_id, secret)
        conn.execute(
            "INSERT INTO webhook_endpoint_secrets (endpoint_id, wrapped, master_key_id)"
            " VALUES (%s, %s, %s)",
            (endpoint_id, wrapped.wrapped, wrapped.master_key_id),
        )
    return to_whsec(secret)


def delivery_state(stack: Stack) -> list[tuple[str, str, str, int]]:
    with psycopg.connect(stack.db_url) as conn:
        return conn.execute(
            "SELECT m.msg_id, m.event_type, d.status, d.attempts FROM webhook_deliveries d"
            " JOIN webhook_messages m ON m.id = d.message_id ORDER BY m.id"
        ).fetchall()


async def test_a_worker_killed_mid_delivery_leaves_every_event_delivered_once_per_id(
    stack: Stack,
) -> None:
    received: list[tuple[str, str, bool]] = []  # (webhook-id, type, verified)
    first_arrived = asyncio.Event()
    verifier: list[Webhook] = []

    async def hooks(request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            verifier[0].verify(raw, dict(request.headers))
            verified = True
        except WebhookVerificationError:
            verified = False
        received.append((request.headers.get("webhook-id", ""), json.loads(raw)["type"], verified))
        if len(received) == 1:
            first_arrived.set()
            await asyncio.sleep(STALL_SECONDS)  # the worker dies while we wait
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hooks", hooks)
    receiver = await serve_app(app)
    try:
        verifier.append(Webhook(add_endpoint(stack, f"{receiver.url}/hooks")))
        stack.extra_env["BITLOOT_WEBHOOK_ALLOW_PRIVATE_URLS"] = "true"
        stack.extra_env["BITLOOT_WEBHOOK_TIMEOUT"] = "30"
        await stack.start_sim()
        await stack.start_api()
        stack.start_worker("worker1")
        async with aiohttp.ClientSession() as http:
            order = await stack.create_order(http, [{"productId": TEXT_PRODUCT_ID, "qty": 1}])
            await stack.pay(http, order["id"])
        await asyncio.wait_for(first_arrived.wait(), 60)
        stack.kill("worker1")  # SIGKILL, the first webhook request in flight
        with psycopg.connect(stack.db_url) as conn:
            doing = conn.execute(
                "SELECT count(*) FROM procrastinate_jobs"
                " WHERE task_name = 'deliver_webhooks' AND status = 'doing'"
            ).fetchone()
        assert doing == (1,), "the delivery job is not mid-attempt: the kill would test nothing"
        assert delivery_state(stack)[0][2:] == ("pending", 0)  # its outcome is unknown

        stack.start_worker("worker2")
        deadline = time.monotonic() + 90
        while True:
            state = delivery_state(stack)
            if len(state) == 2 and all(s == "delivered" for _, _, s, _ in state):
                break
            assert time.monotonic() < deadline, (state, stack.log_text("worker2")[-3000:])
            await asyncio.sleep(0.3)
    finally:
        await receiver.runner.cleanup()

    assert all(verified for _, _, verified in received), received
    msg_ids = {msg_id for msg_id, _, _, _ in state}
    assert {webhook_id for webhook_id, _, _ in received} == msg_ids
    (paid_id, _, _, paid_attempts), (fulfilled_id, _, _, _) = state
    assert [t for _, t, _ in received][:2] == ["order.paid", "order.paid"]  # sent again
    assert received[0][0] == received[1][0] == paid_id
    assert received[-1][:2] == (fulfilled_id, "order.fulfilled")  # after paid, not before
    with psycopg.connect(stack.db_url) as conn:
        attempts = conn.execute(
            "SELECT m.msg_id, a.attempt, a.outcome FROM webhook_attempts a"
            " JOIN webhook_messages m ON m.id = a.message_id ORDER BY a.id"
        ).fetchall()
    # No row for the attempt whose outcome died with worker1: the numbers stay gapless.
    assert [(m, a) for m, a, _ in attempts if m == paid_id] == [(paid_id, paid_attempts)]
    assert attempts[0] == (paid_id, 1, "delivered")
