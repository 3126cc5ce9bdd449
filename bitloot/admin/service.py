"""What admins may do to an order: retry a failed fulfillment, resend the delivery email
(which revokes the links of the earlier emails), refund it, accept a short payment (the
rules of those two live in the payments domain; this adds the audit row). And to the
outbound webhook endpoints: add, disable, enable, rotate the secret, remove (the rules
live in the webhooks domain; this adds the audit row, for the admin API and the CLI).

Each action locks the order, checks it is in a state the action fits, makes its change,
queues its job and appends its `admin_audit_log` row, all on the caller's connection: the
caller opens the one transaction (and names the actor with `set_actor` first, so the
order_events trigger records who and why). Nothing here commits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from bitloot.auth import order_tokens
from bitloot.db.queries import QuerySet
from bitloot.delivery.service import email_generation, queue_delivery_resend
from bitloot.fulfillment import service as fulfillment
from bitloot.payments import service as payments
from bitloot.vault.crypto import MasterKeyRing
from bitloot.webhooks import service as webhooks

Q = QuerySet("bitloot.admin")
Conn = psycopg.AsyncConnection[Any]

RETRY_ACTION = "fulfillment.retry"
RESEND_ACTION = "delivery_email.resend"
REFUND_ACTION = "order.refund"
ACCEPT_ACTION = "payment.accept"
REPLACE_ACTION = "key.replace"
ENDPOINT_ADD_ACTION = "webhook_endpoint.add"
ENDPOINT_DISABLE_ACTION = "webhook_endpoint.disable"
ENDPOINT_ENABLE_ACTION = "webhook_endpoint.enable"
ENDPOINT_ROTATE_ACTION = "webhook_endpoint.rotate_secret"
ENDPOINT_REMOVE_ACTION = "webhook_endpoint.remove"
WEBHOOK_REDELIVER_ACTION = "webhook_endpoint.redeliver"


@dataclass(frozen=True)
class OrderState:
    """The order's two statuses, read under a row lock."""

    status: str
    fulfillment_status: str
    fulfillment_error: str | None


class OrderNotFound(LookupError):
    """No order has this id."""


class NotRepairable(Exception):
    """The order is not in a state the action fits; `state` says which state it is in."""

    def __init__(self, message: str, state: OrderState) -> None:
        super().__init__(message)
        self.state = state


@dataclass(frozen=True)
class QueuedResend:
    """The delivery email a resend added, and how many earlier email links it revoked."""

    outbox_id: int
    generation: int
    revoked_links: int


async def retry_fulfillment(conn: Conn, order_id: uuid.UUID, *, admin_id: str, reason: str) -> None:
    """Move a failed fulfillment back to `pending`, restart its Kinguin polling, queue
    `fulfill_order` and audit it. `NotRepairable` unless the order is paid and failed."""
    state = await _lock_order(conn, order_id)
    if state.fulfillment_status != "failed" or state.status != "paid":
        raise NotRepairable("Only a paid order whose fulfillment failed can be retried.", state)
    moved, kinguin_order_id = await fulfillment.retry_failed(conn, order_id)
    if not moved:  # cannot happen under the row lock; never audit a no-op
        raise NotRepairable("The order changed while being retried.", state)
    await record_admin_action(
        conn,
        admin_id=admin_id,
        action=RETRY_ACTION,
        order_id=order_id,
        reason=reason,
        details={
            "fromFulfillmentStatus": state.fulfillment_status,
            "previousError": state.fulfillment_error,
            "kinguinOrderId": kinguin_order_id,
        },
    )


async def resend_delivery_email(
    conn: Conn, order_id: uuid.UUID, *, admin_id: str, reason: str
) -> QueuedResend:
    """Add the next generation of the delivery email, queue its job and audit it.
    `NotRepairable` unless the order is fulfilled.

    The links of the earlier delivery emails are revoked in the same transaction: a resend
    usually means the first email went astray (a typo'd or compromised mailbox, a
    forwarded message), so the link it carried must stop opening the keys. The new
    email's token is issued when it is sent, after this commits.
    """
    state = await _lock_order(conn, order_id)
    if state.status != "fulfilled":
        raise NotRepairable("Only a fulfilled order has a delivery email to resend.", state)
    revoked = await order_tokens.revoke(conn, order_id, purpose="email", reason="resend")
    outbox_id = await queue_delivery_resend(conn, order_id)
    resend = QueuedResend(
        outbox_id=outbox_id,
        generation=await email_generation(conn, outbox_id),
        revoked_links=revoked,
    )
    await record_admin_action(
        conn,
        admin_id=admin_id,
        action=RESEND_ACTION,
        order_id=order_id,
        reason=reason,
        details={
            "outboxId": resend.outbox_id,
            "generation": resend.generation,
            "revokedLinks": resend.revoked_links,
        },
    )
    return resend


async def refund_order(
    conn: Conn,
    order_id: uuid.UUID,
    *,
    admin_id: str,
    reason: str,
    reference: str,
    amount: Decimal | None,
) -> payments.RefundDone:
    """Record an order's refund and everything that follows it (`payments.refund_order`),
    audited when this call made it (a repeat changes nothing, so audits nothing)."""
    done = await payments.refund_order(
        conn, order_id, admin_id=admin_id, reason=reason, reference=reference, amount=amount
    )
    if done.created:
        refund = done.refund
        await record_admin_action(
            conn,
            admin_id=admin_id,
            action=REFUND_ACTION,
            order_id=order_id,
            reason=reason,
            details={
                "refundId": refund.id,
                "amount": str(refund.amount),
                "currency": refund.currency,
                "reference": refund.reference,
                "amountGiven": amount is not None,
                "fromStatus": done.from_status,
                "fromFulfillmentStatus": done.from_fulfillment_status,
                "revokedKeys": done.revoked_keys,
                "revokedLinks": done.revoked_links,
            },
        )
    return done


async def accept_payment(
    conn: Conn, order_id: uuid.UUID, *, admin_id: str, reason: str
) -> payments.AcceptanceDone:
    """Accept an underpaid order's payment (`payments.accept_payment`): paid, fulfillment
    queued, audited when this call made it."""
    done = await payments.accept_payment(conn, order_id, admin_id=admin_id, reason=reason)
    if done.created:
        await record_admin_action(
            conn,
            admin_id=admin_id,
            action=ACCEPT_ACTION,
            order_id=order_id,
            reason=reason,
            details={
                "acceptanceId": done.acceptance.id,
                "received": str(done.received),
                "currency": done.currency,
            },
        )
    return done


async def replace_key(
    conn: Conn, order_id: uuid.UUID, key_id: str, *, admin_id: str, reason: str
) -> tuple[fulfillment.Replacement, bool]:
    """Queue the replacement of one faulty key (`fulfillment.request_replacement`), audited
    when this call made it: (the replacement, whether it is new)."""
    found, created = await fulfillment.request_replacement(
        conn, order_id, key_id, admin_id=admin_id, reason=reason
    )
    if created:
        await record_admin_action(
            conn,
            admin_id=admin_id,
            action=REPLACE_ACTION,
            order_id=order_id,
            reason=reason,
            details={
                "keyId": key_id,
                "replacementId": found.id,
                "number": found.number,
                "orderExternalId": found.external_id,
            },
        )
    return found, created


async def add_webhook_endpoint(
    conn: Conn,
    ring: MasterKeyRing,
    *,
    admin_id: str,
    reason: str,
    url: str,
    events: list[str] | None,
    description: str | None,
    allow_private: bool,
) -> webhooks.NewEndpoint:
    """Register an outbound webhook endpoint (`webhooks.register_endpoint`), audited; the
    answer carries its secret, to show once (the audit row never does)."""
    new = await webhooks.register_endpoint(
        conn,
        ring,
        url=url,
        events=events,
        description=description,
        created_by=admin_id,
        allow_private=allow_private,
    )
    row = new.endpoint.row
    await _audit_endpoint(
        conn,
        admin_id,
        ENDPOINT_ADD_ACTION,
        reason,
        row.id,
        url=row.url,
        events=row.event_types,
        description=row.description,
    )
    return new


async def disable_webhook_endpoint(
    conn: Conn, endpoint_id: uuid.UUID, *, admin_id: str, reason: str
) -> webhooks.Endpoint:
    """Disable an endpoint with the admin's reason, audited when it was enabled."""
    if await webhooks.disable_endpoint(conn, endpoint_id, reason=reason):
        await _audit_endpoint(conn, admin_id, ENDPOINT_DISABLE_ACTION, reason, endpoint_id)
    return await webhooks.get_endpoint(conn, endpoint_id)


async def enable_webhook_endpoint(
    conn: Conn, endpoint_id: uuid.UUID, *, admin_id: str, reason: str
) -> webhooks.Endpoint:
    """Enable an endpoint again (its pending deliveries are queued), audited when it was
    disabled; the audit row keeps the reason it had been disabled for."""
    before = await webhooks.get_endpoint(conn, endpoint_id)
    if await webhooks.enable_endpoint(conn, endpoint_id):
        await _audit_endpoint(
            conn,
            admin_id,
            ENDPOINT_ENABLE_ACTION,
            reason,
            endpoint_id,
            disabledReason=before.row.disabled_reason,
        )
    return await webhooks.get_endpoint(conn, endpoint_id)


async def rotate_webhook_secret(
    conn: Conn,
    ring: MasterKeyRing,
    endpoint_id: uuid.UUID,
    *,
    admin_id: str,
    reason: str,
    overlap_seconds: float,
) -> webhooks.RotatedSecret:
    """Give an endpoint a new signing secret (the old one signs `overlap_seconds` more),
    audited without either secret."""
    rotated = await webhooks.rotate_secret(conn, ring, endpoint_id, overlap_seconds=overlap_seconds)
    expires = rotated.previous_expires_at
    await _audit_endpoint(
        conn,
        admin_id,
        ENDPOINT_ROTATE_ACTION,
        reason,
        endpoint_id,
        previousSecretExpiresAt=expires.isoformat() if expires else None,
    )
    return rotated


async def remove_webhook_endpoint(
    conn: Conn, endpoint_id: uuid.UUID, *, admin_id: str, reason: str
) -> webhooks.RemovedEndpoint:
    """Remove an endpoint (its pending deliveries fail), audited."""
    url = (await webhooks.get_endpoint(conn, endpoint_id)).row.url
    removed = await webhooks.remove_endpoint(conn, endpoint_id)
    await _audit_endpoint(
        conn,
        admin_id,
        ENDPOINT_REMOVE_ACTION,
        reason,
        endpoint_id,
        url=url,
        failedDeliveries=removed.failed_deliveries,
    )
    return removed


async def redeliver_webhooks(
    conn: Conn,
    endpoint_id: uuid.UUID,
    *,
    admin_id: str,
    reason: str,
    msg_id: str | None = None,
    since: datetime | None = None,
) -> int:
    """Send an endpoint one event again, or every event it failed since a time
    (`webhooks.redeliver`), audited; how many deliveries were put back to pending."""
    count = await webhooks.redeliver(conn, endpoint_id, msg_id=msg_id, since=since)
    await _audit_endpoint(
        conn,
        admin_id,
        WEBHOOK_REDELIVER_ACTION,
        reason,
        endpoint_id,
        messageId=msg_id,
        since=since.isoformat() if since else None,
        redelivered=count,
    )
    return count


async def _audit_endpoint(
    conn: Conn,
    admin_id: str,
    action: str,
    reason: str,
    endpoint_id: uuid.UUID,
    **details: Any,
) -> None:
    await record_admin_action(
        conn,
        admin_id=admin_id,
        action=action,
        order_id=None,
        reason=reason,
        details={"endpointId": str(endpoint_id), **details},
    )


async def record_admin_action(
    conn: Conn,
    *,
    admin_id: str,
    action: str,
    order_id: uuid.UUID | None,
    reason: str,
    details: dict[str, Any],
) -> int:
    """Append one row to the append-only admin audit log; returns its id."""
    cur = await conn.execute(
        Q["insert_admin_audit"],
        {
            "admin_id": admin_id,
            "action": action,
            "order_id": order_id,
            "reason": reason,
            "details": Jsonb(details),
        },
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def _lock_order(conn: Conn, order_id: uuid.UUID) -> OrderState:
    async with conn.cursor(row_factory=class_row(OrderState)) as cur:
        await cur.execute(Q["lock_order_for_repair"], {"order_id": order_id})
        state = await cur.fetchone()
    if state is None:
        raise OrderNotFound(str(order_id))
    return state
