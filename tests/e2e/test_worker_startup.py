"""A real `bitloot worker` names its mail transport in its start-up line."""

from __future__ import annotations

import asyncio
import json
import time

from stack import Stack


async def test_worker_start_up_line_names_the_mail_transport(stack: Stack) -> None:
    await stack.start_sim()
    stack.start_worker()
    deadline = time.monotonic() + 60
    started: dict[str, object] = {}
    while not started and time.monotonic() < deadline:
        for line in stack.log_text("worker").splitlines():
            if '"worker.started"' in line:
                started = json.loads(line)
        await asyncio.sleep(0.2)
    assert started, stack.log_text("worker")[-2000:]
    assert started["mail"] == f"MailDirTransport({str(stack.data_dir / 'mail')!r})"
