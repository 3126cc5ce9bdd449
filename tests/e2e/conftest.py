from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mail import SmtpSink
from stack import Stack

from bitloot.processes import free_port


@pytest.fixture
async def stack(db_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    s = Stack(db_url=db_url, data_dir=tmp_path)
    s.seed_products()
    try:
        yield s
    finally:
        s.stop_all()


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpSink]:
    """A real SMTP server on a free port (set `BITLOOT_SMTP_URL` to `smtp.url` to use it)."""
    sink = SmtpSink(port=free_port())
    sink.start()
    yield sink
    sink.stop()
