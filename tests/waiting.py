"""Waiting for something observable to happen, bounded by a deadline (import as `from waiting
import wait_until`). Never wait with a bare sleep: on a slow machine a sleep that was long
enough here is too short there, and a check that "nothing more happened" after one passes
without having checked anything."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]],
    timeout: float = 10.0,
    what: str = "condition",
    *,
    interval: float = 0.05,
) -> None:
    """Poll `predicate` (sync or async) until it is true; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout:g}s")
        await asyncio.sleep(interval)


def wait_until_sync(
    predicate: Callable[[], bool],
    timeout: float = 10.0,
    what: str = "condition",
    *,
    interval: float = 0.05,
) -> None:
    """`wait_until` for tests without an event loop."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout:g}s")
        time.sleep(interval)
