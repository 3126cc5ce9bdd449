"""The aiohttp session our provider clients share the handling of."""

from __future__ import annotations

from types import TracebackType
from typing import Self

import aiohttp


class SessionClient:
    """Base of the provider clients: use a session the caller gives (and leave it open), or
    open one on first use and close it with `close()` / `async with`."""

    _session: aiohttp.ClientSession | None
    _owns_session: bool
    _session_timeout: aiohttp.ClientTimeout | None

    def _init_session(
        self, session: aiohttp.ClientSession | None, timeout: aiohttp.ClientTimeout | None = None
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._session_timeout = timeout

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = (
                aiohttp.ClientSession(timeout=self._session_timeout)
                if self._session_timeout is not None
                else aiohttp.ClientSession()
            )
            self._owns_session = True
        return self._session

    async def __aenter__(self) -> Self:
        self._ensure_session()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session if this client created it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None
