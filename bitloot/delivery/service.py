"""The delivery domain: an email per delivery, queued inside the caller's transaction.

The outbox row (`repository`) is the email's identity: one row per (order, kind,
generation), so a retried job never sends twice; `tasks.send_delivery_email` sends it (see
its module for what "exactly once" can mean over SMTP).
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import structlog

from bitloot.delivery import repository as outbox
from bitloot.queue import queue_app

log = structlog.get_logger(__name__)
Conn = psycopg.AsyncConnection[Any]

SEND_TASK = "send_delivery_email"


async def queue_delivery_email(conn: Conn, order_id: uuid.UUID) -> int:
    """Create the order's delivery email (idempotent) and defer its job on `conn`.

    Call it inside the transaction that marks the order fulfilled, so the email exists
    exactly when the fulfillment committed. Returns the outbox id.
    """
    to_address = await outbox.order_email(conn, order_id)
    outbox_id = await outbox.create_delivery_email(conn, order_id, to_address)
    await _defer(conn, outbox_id)
    log.info("email.queued", outbox_id=outbox_id, order_id=str(order_id), resend=False)
    return outbox_id


async def queue_delivery_resend(
    conn: Conn, order_id: uuid.UUID, to_address: str | None = None
) -> int:
    """Add the next generation of the delivery email (an admin resend) and defer its job.

    `to_address` defaults to the order's email. Returns the new outbox id.
    """
    address = to_address or await outbox.order_email(conn, order_id)
    outbox_id = await outbox.next_generation_for_resend(conn, order_id, address)
    await _defer(conn, outbox_id)
    log.info("email.queued", outbox_id=outbox_id, order_id=str(order_id), resend=True)
    return outbox_id


async def email_generation(conn: Conn, outbox_id: int) -> int:
    """Which generation of its order's delivery email an outbox row is (1: the first)."""
    return await outbox.generation_of(conn, outbox_id)


async def _defer(conn: Conn, outbox_id: int) -> None:
    # A second job for the same row is harmless (it finds the row sent), so no queueing lock.
    # By name: the task lives in `tasks`, which uses this module (no import cycle).
    deferrer = queue_app.configure_task(SEND_TASK, allow_unknown=False, connection=conn)
    await deferrer.defer_async(outbox_id=outbox_id)
