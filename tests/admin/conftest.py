"""Fixtures of the admin endpoint tests: an HTTP client and tokens for the running API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from admin_support import Tokens

from bitloot.config import Settings


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def tokens(api: Any, make_settings: Callable[..., Settings]) -> Tokens:
    return Tokens(make_settings(), api)
