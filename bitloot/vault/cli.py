"""`bitloot keys rotate`: the operator's side of master key rotation."""

from __future__ import annotations

import sys

import psycopg
import structlog
from tqdm import tqdm

from bitloot.vault import repository
from bitloot.vault.canary import check_master_keys
from bitloot.vault.crypto import MasterKeyRing
from bitloot.vault.rotate import rotate_canaries, rotate_data_keys

log = structlog.get_logger(__name__)


async def run_rotate(conninfo: str, ring: MasterKeyRing, batch_size: int = 1000) -> int:
    """Check the keys, re-wrap every data key under the active one with a progress bar on
    stderr, then settle the canaries; return how many data keys were re-wrapped.
    """
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
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
