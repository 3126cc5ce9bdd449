"""Key collection: encrypt each key, upload it, then record everything in one transaction."""

from __future__ import annotations

import uuid

import structlog

from bitloot.chaos import crash_point
from bitloot.db.connect import set_actor
from bitloot.delivery.service import queue_delivery_email
from bitloot.fulfillment import repository
from bitloot.kinguin.models import Key, Order
from bitloot.metrics import TIME_TO_KEY
from bitloot.resources import Resources
from bitloot.storage.base import object_key_for
from bitloot.vault.crypto import seal_key

log = structlog.get_logger(__name__)

CIPHERTEXT_TYPE = "application/octet-stream"


async def store_keys(
    res: Resources, order_id: uuid.UUID, kinguin_order: Order, keys: list[Key]
) -> None:
    """Seal and upload every key, then write the delivery log, fulfil, and queue the email.

    Uploads come first and overwrite the same object names on a retry, so a crash anywhere
    before the final commit leaves nothing recorded and the retry simply does it again; the
    commit is the single point where the order becomes fulfilled.
    """
    stored = await seal_and_upload(res, order_id, keys)
    crash_point("after_upload")

    # A pipeline: statements that need no answer go out with the next one that does, so
    # the transaction is five round trips instead of ten (issue 17).
    async with res.pool.connection() as conn, conn.pipeline(), conn.transaction():
        await set_actor(
            conn, "worker", f"{len(stored)} key(s) from Kinguin {kinguin_order.order_id}"
        )
        state = await repository.lock_order(conn, order_id)
        if state is None or state.status != "paid" or state.fulfillment_status != "processing":
            log.info("fulfillment.already_done")
            return
        await repository.update_kinguin_status(conn, order_id, "completed")
        seconds = await repository.record_keys_and_fulfill(
            conn, order_id, stored, res.settings.key_retention_days
        )
        outbox_id = await queue_delivery_email(conn, order_id)
    if seconds is not None:
        TIME_TO_KEY.observe(seconds)
    # One line for the whole step (keys stored, order fulfilled, email queued): a log line
    # costs a worker about what a query does (issue 17's profile), so there is one.
    log.info(
        "fulfillment.fulfilled", keys=len(stored), seconds_to_key=seconds, email_outbox_id=outbox_id
    )


async def seal_and_upload(
    res: Resources, order_id: uuid.UUID, keys: list[Key]
) -> list[repository.StoredKey]:
    """Encrypt each key (a fresh data key, the order and key ids bound) and upload its
    ciphertext to `orders/{orderId}/{keyId}.bin`; what the delivery log must record.

    The object name depends only on the ids, so a retry overwrites what a crashed attempt
    uploaded: nothing is left behind that no row points to for long."""
    stored: list[repository.StoredKey] = []
    for key in keys:
        sealed = seal_key(key.plaintext(), order_id=order_id, key_id=key.id, ring=res.ring)
        object_key = object_key_for(order_id, key.id)
        await res.storage.put(
            object_key,
            sealed.blob,
            content_type=CIPHERTEXT_TYPE,
            metadata={"order-id": str(order_id), "key-type": key.type},
        )
        stored.append(
            repository.StoredKey(
                key_id=key.id,
                product_id=key.product_id,
                object_key=object_key,
                content_type=key.type,
                wrapped_data_key=sealed.wrapped_data_key,
                master_key_id=sealed.master_key_id,
            )
        )
    return stored
