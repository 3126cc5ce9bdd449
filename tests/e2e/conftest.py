from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from stack import Stack


@pytest.fixture
async def stack(db_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    s = Stack(db_url=db_url, data_dir=tmp_path)
    s.seed_products()
    try:
        yield s
    finally:
        s.stop_all()
