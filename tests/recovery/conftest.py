"""Fixtures of the recovery tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from bitloot.config import Settings
from bitloot.vault.crypto import MasterKeyRing


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def ring(make_settings: Callable[..., Settings]) -> MasterKeyRing:
    """The master keys every API of the test is configured with."""
    keys = make_settings().master_keys
    assert keys is not None
    return MasterKeyRing.parse(keys.get_secret_value())
