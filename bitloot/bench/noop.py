"""The pipeline benchmark's baseline: procrastinate no-op jobs, in an App of their own.

`python -m bitloot.bench.noop --concurrency C` runs procrastinate's worker on the `bench_noop`
queue with the options `bitloot worker` uses (heartbeat, `delete_jobs="successful"`,
LISTEN/NOTIFY) and the same pool size, so the only difference from a BitLoot worker is the
work each job does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

import procrastinate
import psycopg
from procrastinate.types import JSONValue
from psycopg_pool import AsyncConnectionPool

NOOP_QUEUE = "bench_noop"
POOL_SIZE = 10  # what `bitloot worker` opens (bitloot.resources.open_core)

noop_app = procrastinate.App(connector=procrastinate.PsycopgConnector())


@noop_app.task(name="bench_noop", queue=NOOP_QUEUE)
async def noop(i: int) -> None:
    """Do nothing."""


async def defer_noops(conn: psycopg.AsyncConnection[Any], count: int) -> None:
    """Defer `count` no-op jobs on `conn`, in its transaction, in batches of 1,000."""
    deferrer = noop.configure(connection=conn)
    for start in range(0, count, 1000):
        batch: list[dict[str, JSONValue]] = [
            {"i": i} for i in range(start, min(count, start + 1000))
        ]
        await deferrer.batch_defer_async(*batch)


async def _autocommit(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.set_autocommit(True)


async def run(concurrency: int) -> None:
    pool = AsyncConnectionPool(
        os.environ["DATABASE_URL"],
        min_size=1,
        max_size=POOL_SIZE,
        open=False,
        configure=_autocommit,
    )
    await pool.open(wait=True, timeout=15)
    try:
        async with noop_app.open_async(pool):
            await noop_app.run_worker_async(
                concurrency=concurrency,
                queues=[NOOP_QUEUE],
                update_heartbeat_interval=2.0,
                install_signal_handlers=True,
                delete_jobs="successful",
            )
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(run(args.concurrency))


if __name__ == "__main__":
    main()
