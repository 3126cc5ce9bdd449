"""The delivery domain: every email a customer gets, queued inside the caller's transaction.

The outbox row (`repository`) is the email's identity: one row per (order, kind,
generation), so a retried job never sends twice; `tasks.send_delivery_email` sends it (see
its module for what "exactly once" can mean over SMTP). Three families share it:

* the delivery email (the key-page link), and an admin's resends of it;
* customer notices (`queue_notice`): payment received, underpaid, undeliverable, refunded,
  key replaced; one per kind per order, so a duplicated job or a replayed webhook never
  sends a second one (a key replacement numbers its notice with the replacement);
* recovery emails (`queue_recovery_email`): fresh links for every order of an address.

No email ever carries a key: at most a key-page link whose order access token is issued
when the email is sent (see `tasks`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Literal

import psycopg
import structlog

from bitloot.delivery import repository as outbox
from bitloot.queue import queue_app

log = structlog.get_logger(__name__)
Conn = psycopg.AsyncConnection[Any]

SEND_TASK = "send_delivery_email"

NoticeKind = Literal["payment_received", "underpaid", "undeliverable", "refunded", "key_replaced"]


async def queue_delivery_email(conn: Conn, order_id: uuid.UUID) -> int:
    """Create the order's delivery email (idempotent) and defer its job on `conn`.

    Call it inside the transaction that marks the order fulfilled, so the email exists
    exactly when the fulfillment committed. Returns the outbox id.
    """
    to_address = await outbox.order_email(conn, order_id)
    outbox_id = await outbox.create_delivery_email(conn, order_id, to_address)
    await _defer(conn, outbox_id)
    # Debug only: the caller's `fulfillment.fulfilled` line names the outbox row.
    log.debug("email.queued", outbox_id=outbox_id, order_id=str(order_id), resend=False)
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


async def queue_notice(
    conn: Conn,
    order_id: uuid.UUID,
    kind: NoticeKind,
    *,
    details: Mapping[str, str] | None = None,
    generation: int = 1,
) -> int | None:
    """Queue the order's `kind` notice (to the order's address) and defer its job on `conn`.

    Call it in the transaction of the change it announces. Idempotent on (order, kind,
    generation): a second call finds the row and queues nothing (None). `details` are
    fixed into the row (amounts, a key id: never a key, a token or a link); a key
    replacement passes its replacement number as `generation`. Returns the new outbox id.
    """
    to_address = await outbox.order_email(conn, order_id)
    outbox_id = await outbox.create_notice(
        conn,
        order_id,
        kind,
        to_address=to_address,
        details=dict(details or {}),
        generation=generation,
    )
    if outbox_id is None:
        log.info("email.notice_exists", order_id=str(order_id), kind=kind)
        return None
    await _defer(conn, outbox_id)
    log.info("email.queued", outbox_id=outbox_id, order_id=str(order_id), kind=kind)
    return outbox_id


async def queue_recovery_email(conn: Conn, *, request_id: int, to_address: str) -> int:
    """Queue the recovery email answering `request_id` and defer its job on `conn`.

    The orders it lists are the request's `recovery_request_orders` rows (insert them in
    the same transaction first). When it is sent, each order's earlier emailed links are
    revoked and a fresh one is issued. Returns the outbox id.
    """
    outbox_id = await outbox.create_recovery_email(conn, request_id, to_address)
    await _defer(conn, outbox_id)
    log.info("email.queued", outbox_id=outbox_id, recovery_request_id=request_id)
    return outbox_id


async def email_generation(conn: Conn, outbox_id: int) -> int:
    """Which generation of its order's delivery email an outbox row is (1: the first)."""
    return await outbox.generation_of(conn, outbox_id)


async def _defer(conn: Conn, outbox_id: int) -> None:
    # A second job for the same row is harmless (it finds the row sent), so no queueing lock.
    # By name: the task lives in `tasks`, which uses this module (no import cycle).
    deferrer = queue_app.configure_task(SEND_TASK, allow_unknown=False, connection=conn)
    await deferrer.defer_async(outbox_id=outbox_id)
