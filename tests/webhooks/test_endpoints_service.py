"""The endpoint workflows on a real database, below the CLI and the API: what enabling an
endpoint again queues, and what a removal leaves signing."""

from __future__ import annotations

import uuid

from endpoints_support import Conn, expired_order_event

from bitloot.vault.crypto import MasterKeyRing, generate_master_key
from bitloot.webhooks.service import (
    disable_endpoint,
    enable_endpoint,
    register_endpoint,
    remove_endpoint,
    signing_secrets,
)

RING = MasterKeyRing.parse(generate_master_key("k1"))


async def registered(conn: Conn) -> uuid.UUID:
    async with conn.transaction():
        new = await register_endpoint(
            conn,
            RING,
            url="https://93.184.215.14/hooks",
            events=["order.expired"],
            description=None,
            created_by="test",
            allow_private=False,
        )
    return new.endpoint.id


async def waiting_jobs(conn: Conn, endpoint_id: uuid.UUID) -> list[str]:
    cur = await conn.execute(
        "SELECT args->>'order_id' FROM procrastinate_jobs"
        " WHERE task_name = 'deliver_webhooks' AND status = 'todo'"
        " AND args->>'endpoint_id' = %s ORDER BY id",
        (str(endpoint_id),),
    )
    return [str(row[0]) for row in await cur.fetchall()]


async def test_enabling_again_queues_what_is_still_pending_for_it(conn: Conn) -> None:
    endpoint_id = await registered(conn)
    order_id = await expired_order_event(conn)
    assert await waiting_jobs(conn, endpoint_id) == [str(order_id)]
    async with conn.transaction():
        assert await disable_endpoint(conn, endpoint_id, reason="receiver down") is True
        assert await disable_endpoint(conn, endpoint_id, reason="again") is False
    # The worker ran the job meanwhile and left the delivery pending (endpoint disabled).
    await conn.execute(
        "UPDATE procrastinate_jobs SET status = 'succeeded' WHERE task_name = 'deliver_webhooks'"
    )
    assert await waiting_jobs(conn, endpoint_id) == []

    async with conn.transaction():
        assert await enable_endpoint(conn, endpoint_id) is True
        assert await enable_endpoint(conn, endpoint_id) is False
    assert await waiting_jobs(conn, endpoint_id) == [str(order_id)]


async def test_a_removed_endpoint_has_no_secret_left_signing(conn: Conn) -> None:
    endpoint_id = await registered(conn)
    assert len(await signing_secrets(conn, RING, endpoint_id)) == 1
    async with conn.transaction():
        removed = await remove_endpoint(conn, endpoint_id)
    assert removed.failed_deliveries == 0
    assert await signing_secrets(conn, RING, endpoint_id) == []
