"""Re-wrap every stored data key under the active master key, online.

Only the small wrapped data keys in `key_delivery_logs` change; the sealed blobs in the
object store, and the data keys inside them, stay exactly as they are. Each batch is its
own short transaction (lock a keyset page with SKIP LOCKED, re-wrap in memory, one UPDATE,
commit), so readers and writers keep working throughout, and a run that stops half way
is simply run again: rows already done carry the active id and are not selected twice.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable

import psycopg
import structlog
from psycopg.pq import TransactionStatus
from tqdm import tqdm

from bitloot.vault import repository
from bitloot.vault.canary import check_master_keys, ensure_active_canary, verify_canaries
from bitloot.vault.crypto import MasterKeyRing, VaultError, rewrap
from bitloot.vault.repository import Conn

log = structlog.get_logger(__name__)

# The keyset cursor starts below every real id: the nil UUID is never generated.
_START = uuid.UUID(int=0)
# Rows that a writer held locked during a pass are picked up by the next pass; a few
# passes are plenty, and the cap keeps a misconfigured writer from making this endless.
_MAX_PASSES = 5

Progress = Callable[[int, int], None]


async def rotate_data_keys(
    conn: Conn,
    ring: MasterKeyRing,
    *,
    batch_size: int = 1000,
    progress: Progress | None = None,
) -> int:
    """Re-wrap every data key not under ``ring.active_id``; return how many were re-wrapped.

    `progress(done, total)` is called after each committed batch. The connection must not
    be inside a transaction: every batch commits on its own.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise VaultError("rotate_data_keys must run outside a transaction: each batch commits")
    total = await repository.count_to_rewrap(conn, ring.active_id)
    log.info("vault.rotate_started", active=ring.active_id, to_rewrap=total)
    done = 0
    for _ in range(_MAX_PASSES):
        before = done
        cursor = _START
        while True:
            rows = await _rewrap_one_batch(conn, ring, after=cursor, limit=batch_size)
            if not rows:
                break
            cursor, done = rows[-1].id, done + len(rows)
            total = max(total, done)
            log.debug("vault.rotate_batch", rewrapped=done, total=total)
            if progress is not None:
                progress(done, total)
        if done == before:
            break
    remaining = await repository.count_to_rewrap(conn, ring.active_id)
    if remaining:
        # Locked throughout, or still being written by a process with the old key list.
        log.warning("vault.rotate_incomplete", active=ring.active_id, remaining=remaining)
    log.info("vault.rotate_finished", active=ring.active_id, rewrapped=done)
    return done


async def _rewrap_one_batch(
    conn: Conn, ring: MasterKeyRing, *, after: uuid.UUID, limit: int
) -> list[repository.WrappedKeyRow]:
    async with conn.transaction():
        rows = await repository.lock_rewrap_batch(
            conn, after=after, active_id=ring.active_id, limit=limit
        )
        if not rows:
            return rows
        updates = [
            (
                row.id,
                row.master_key_id,
                rewrap(
                    row.wrapped_data_key,
                    master_key_id=row.master_key_id,
                    order_id=row.order_id,
                    key_id=row.key_id,
                    ring=ring,
                ).wrapped,
            )
            for row in rows
        ]
        updated = await repository.rewrap_batch(conn, updates, new_master_key_id=ring.active_id)
        if updated != len(rows):
            # Cannot happen while the rows are locked; roll the batch back rather than guess.
            raise VaultError(f"re-wrap updated {updated} of {len(rows)} locked rows")
    return rows


async def rotate_canaries(conn: Conn, ring: MasterKeyRing) -> list[str]:
    """After a rotation: verify the canaries, make sure the active key has one, and return
    the other configured ids that no longer wrap any data key (candidates for retirement).
    """
    await verify_canaries(conn, ring)
    await ensure_active_canary(conn, ring)
    older = [i for i in ring.ids if i != ring.active_id]
    in_use = await repository.count_by_master_key(conn, older)
    retirable = [i for i in older if i not in in_use]
    if retirable:
        log.info("vault.master_keys_retirable", ids=retirable)
    return retirable


async def run_rotate(conninfo: str, ring: MasterKeyRing, batch_size: int = 1000) -> int:
    """Check the keys, re-wrap every data key under the active one with a progress bar on
    stderr, then settle the canaries; return how many data keys were re-wrapped.
    """
    # Its batches repeat the same statements, which psycopg would prepare on the server
    # after five runs: not behind a transaction pooler (BITLOOT_DATABASE_POOLER), where
    # each transaction may get another server connection; planning is cheap next to the
    # re-wrapping.
    async with await psycopg.AsyncConnection.connect(
        conninfo, autocommit=True, prepare_threshold=None
    ) as conn:
        # First, so a mistyped new key is caught before it wraps anything, and so the
        # new key's canary exists before the first row depends on it.
        await check_master_keys(conn, ring)
        total = await repository.count_to_rewrap(conn, ring.active_id)
        with tqdm(
            total=total, file=sys.stderr, unit="key", desc=f"re-wrap under {ring.active_id}"
        ) as bar:

            def progress(done: int, seen_total: int) -> None:
                bar.total = seen_total
                bar.update(done - bar.n)

            rewrapped = await rotate_data_keys(conn, ring, batch_size=batch_size, progress=progress)
        retirable = await rotate_canaries(conn, ring)
    log.info(
        "vault.keys_rotated",
        active=ring.active_id,
        rewrapped=rewrapped,
        retirable=retirable,
    )
    return rewrapped
