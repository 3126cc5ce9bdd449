"""What our provider clients share: the aiohttp session handling, the one retry policy
(`RetryPolicy`, on tenacity) and the one `Retry-After` parser."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Generic, NoReturn, Self, TypeAlias, TypeVar, cast

import aiohttp
import tenacity

E = TypeVar("E", bound=Exception)
T = TypeVar("T")

Sleep: TypeAlias = Callable[[float], Awaitable[None]]

BeforeRetry: TypeAlias = Callable[[E, int, float], None]
"""Called before each retry's wait: `(error, attempt that failed, seconds to wait)`."""

GaveUp: TypeAlias = Callable[[E, int], None]
"""Called when a retryable error is about to raise because no attempt is left:
`(error, attempts made)`."""

Rescue: TypeAlias = Callable[[Exception], Awaitable[T | None]]
"""Called after every failed attempt, the last one included, before the retry decision:
a result that ends the call (returned as the call's), or None to go on as if not called.
An error the hook raises ends the call as it is, never retried."""

MAX_RETRY_AFTER = 3600.0
"""The longest `Retry-After` we read (seconds); a policy caps its waits much lower."""

_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


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


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` in seconds, at most `MAX_RETRY_AFTER`: delta-seconds (a fraction is
    accepted, as some servers send one) or an HTTP-date (one already past is 0). None when
    the header is absent, negative or unreadable. `now` (aware) defaults to the clock."""
    if value is None:
        return None
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        seconds = float(text)  # far too many digits is inf, capped below
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # "-0000": UTC by RFC 5322
            when = when.replace(tzinfo=UTC)
        seconds = max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    return min(seconds, MAX_RETRY_AFTER)


class RetryPolicy(Generic[E]):
    """How a provider client retries: up to `attempts` tries of a call while it fails with
    a `retry_on` error (that `retry_if` accepts, when given), waiting before each retry what
    the error's `retry_after` asks (seconds, capped at `retry_after_cap`, by default
    `backoff_max * 4`) or else exponential backoff with full jitter: a uniform draw in
    `[0, min(backoff_max, backoff_base * 2**(attempt - 1))]`. Anything else raises at once.

    `rng` and `sleep` are the injection points for tests (a seeded draw; waits recorded or
    made instant). The loop is tenacity's, built afresh for each call, so concurrent calls
    share nothing but this configuration.
    """

    def __init__(
        self,
        retry_on: type[E],
        *,
        attempts: int,
        backoff_base: float,
        backoff_max: float,
        retry_after_cap: float | None = None,
        retry_if: Callable[[E], bool] | None = None,
        rng: random.Random | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.retry_on = retry_on
        self.attempts = attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_after_cap = backoff_max * 4 if retry_after_cap is None else retry_after_cap
        self._retry_if = retry_if
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not security)
        self._sleep: Sleep = sleep or asyncio.sleep

    def retries(self, exc: BaseException) -> bool:
        """Whether a failure with `exc` is retried (attempts left permitting)."""
        return isinstance(exc, self.retry_on) and (self._retry_if is None or self._retry_if(exc))

    def delay(self, attempt: int, exc: BaseException) -> float:
        """The wait after failed attempt number `attempt` (1-based) with `exc`."""
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, int | float):
            return max(0.0, min(retry_after, self.retry_after_cap))
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** min(attempt - 1, 64))
        return self._rng.uniform(0, ceiling)

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        attempts: int | None = None,
        before_retry: BeforeRetry[E] | None = None,
        gave_up: GaveUp[E] | None = None,
        rescue: Rescue[T] | None = None,
    ) -> T:
        """`fn()`'s result, retried per the policy (`attempts` overrides the count).

        `rescue` runs after each failed attempt (see `Rescue`); `before_retry` before each
        wait and `gave_up` before the last error raises (as itself), for logging.
        """
        rescue_failed = False

        async def attempt() -> T:
            nonlocal rescue_failed
            try:
                return await fn()
            except Exception as exc:
                if rescue is None:
                    raise
                try:
                    found = await rescue(exc)
                except BaseException:
                    rescue_failed = True
                    raise
                if found is None:
                    raise
                return found

        def retries(exc: BaseException) -> bool:
            return not rescue_failed and self.retries(exc)

        def wait(state: tenacity.RetryCallState) -> float:
            return self.delay(state.attempt_number, _failure(state))

        def announce(state: tenacity.RetryCallState) -> None:
            if before_retry is not None:
                error = cast(E, _failure(state))  # `retries` accepted it
                before_retry(error, state.attempt_number, state.upcoming_sleep)

        def give_up(state: tenacity.RetryCallState) -> NoReturn:
            error = _failure(state)
            if gave_up is not None:
                gave_up(cast(E, error), state.attempt_number)
            raise error

        async def sleep(seconds: float) -> None:
            await self._sleep(float(seconds))  # tenacity's float subclass, as a float

        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(attempts or self.attempts),
            wait=wait,
            retry=tenacity.retry_if_exception(retries),
            before_sleep=announce,
            retry_error_callback=give_up,
            sleep=sleep,
            reraise=True,
        )
        return cast(T, await retrying(attempt))


def _failure(state: tenacity.RetryCallState) -> BaseException:
    exc = state.outcome.exception() if state.outcome is not None else None
    if exc is None:  # tenacity only waits after a failure
        raise RuntimeError("retry state without a failure")
    return exc
