"""The provider clients' shared pieces: the `Retry-After` parser and the retry policy."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bitloot.httpclient import MAX_RETRY_AFTER, RetryPolicy, parse_retry_after

NOW = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)

# --- parse_retry_after -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("2", 2.0), (" 120 ", 120.0), ("0", 0.0), ("0.15", 0.15)],
)
def test_delta_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value) == seconds


def test_http_date_is_seconds_from_now() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=NOW) == 30.0
    # An obsolete zone-less form reads as UTC.
    assert parse_retry_after("Wed, 21 Oct 2015 07:29:00 -0000", now=NOW) == 60.0


def test_past_http_date_is_zero() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now=NOW) == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # the real clock


@pytest.mark.parametrize(
    "value", [None, "", "soon", "-1", "-0.5", "1e3", "inf", "nan", "0x10", "Wed, 99 Foo"]
)
def test_negative_or_garbage_is_none(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


def test_huge_is_capped() -> None:
    assert parse_retry_after("9" * 400) == MAX_RETRY_AFTER
    assert parse_retry_after("86400") == MAX_RETRY_AFTER
    far = (NOW + timedelta(days=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after(far, now=NOW) == MAX_RETRY_AFTER


# --- RetryPolicy ---------------------------------------------------------------------------


class Flaky(Exception):
    def __init__(self, n: int, *, retry_after: float | None = None, retryable: bool = True):
        super().__init__(f"failure {n}")
        self.retry_after = retry_after
        self.retryable = retryable


class Other(Exception):
    pass


class Recorder:
    """A policy's sleeps and hook calls, in the order they happened."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    async def sleep(self, seconds: float) -> None:
        self.events.append(("sleep", seconds))

    def before_retry(self, exc: Flaky, attempt: int, delay: float) -> None:
        self.events.append(("retry", attempt, delay, str(exc)))

    @property
    def sleeps(self) -> list[float]:
        return [e[1] for e in self.events if e[0] == "sleep"]


def policy(rec: Recorder, **options: Any) -> RetryPolicy[Flaky]:
    settings: dict[str, Any] = {
        "attempts": 4,
        "backoff_base": 0.01,
        "backoff_max": 0.05,
        "rng": random.Random(7),
        "sleep": rec.sleep,
    }
    settings |= options
    return RetryPolicy(Flaky, **settings)


def failing(*errors: Exception) -> tuple[list[int], Callable[[], Awaitable[str]]]:
    """A call that raises `errors` in turn, then returns "ok"; and its calls."""
    calls: list[int] = []

    async def fn() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return "ok"

    return calls, fn


async def test_honours_retry_after_capped_at_four_backoff_max() -> None:
    rec = Recorder()
    calls, fn = failing(Flaky(1, retry_after=0.15), Flaky(2, retry_after=30))
    assert await policy(rec).call(fn) == "ok"
    assert rec.sleeps == [0.15, 0.05 * 4] and len(calls) == 3


async def test_retry_after_cap_can_be_set() -> None:
    rec = Recorder()
    _, fn = failing(Flaky(1, retry_after=3600))
    await policy(rec, retry_after_cap=30.0).call(fn)
    assert rec.sleeps == [30.0]


async def test_backoff_is_exponential_with_full_jitter() -> None:
    rec = Recorder()
    _, fn = failing(*(Flaky(n) for n in range(5)))
    await policy(rec, attempts=6).call(fn)
    assert len(rec.sleeps) == 5
    for attempt, delay in enumerate(rec.sleeps, start=1):
        assert isinstance(delay, float)
        assert 0 <= delay <= min(0.05, 0.01 * 2 ** (attempt - 1))


async def test_gives_up_after_n_attempts_with_the_last_error() -> None:
    rec = Recorder()
    gave_up: list[tuple[Flaky, int]] = []
    errors = [Flaky(n) for n in range(1, 6)]
    calls, fn = failing(*errors)
    with pytest.raises(Flaky) as caught:
        await policy(rec, attempts=3).call(fn, gave_up=lambda e, n: gave_up.append((e, n)))
    assert caught.value is errors[2] and len(calls) == 3 and len(rec.sleeps) == 2
    assert gave_up == [(errors[2], 3)]


async def test_attempts_can_be_lowered_per_call() -> None:
    rec = Recorder()
    calls, fn = failing(Flaky(1))
    with pytest.raises(Flaky):
        await policy(rec).call(fn, attempts=1)
    assert len(calls) == 1 and rec.events == []


async def test_hook_is_called_before_each_retry_with_its_wait() -> None:
    rec = Recorder()
    _, fn = failing(Flaky(1), Flaky(2, retry_after=0.02))
    await policy(rec).call(fn, before_retry=rec.before_retry)
    first_wait = rec.events[1][1]
    assert rec.events == [
        ("retry", 1, first_wait, "failure 1"),
        ("sleep", first_wait),
        ("retry", 2, 0.02, "failure 2"),
        ("sleep", 0.02),
    ]


async def test_only_the_retryable_errors_are_retried() -> None:
    rec = Recorder()
    calls, fn = failing(Other("no"))
    with pytest.raises(Other):
        await policy(rec).call(fn, before_retry=rec.before_retry)
    calls2, fn2 = failing(Flaky(1, retryable=False))
    with pytest.raises(Flaky):
        await policy(rec, retry_if=lambda e: e.retryable).call(fn2)
    assert len(calls) == len(calls2) == 1 and rec.events == []


async def test_rescue_runs_after_every_failure_and_may_end_the_call() -> None:
    rec = Recorder()
    seen: list[str] = []

    async def rescue(exc: Exception) -> str | None:
        seen.append(str(exc))
        return "found" if str(exc) == "failure 2" else None

    calls, fn = failing(Flaky(1), Flaky(2), Flaky(3))
    assert await policy(rec).call(fn, rescue=rescue) == "found"
    assert seen == ["failure 1", "failure 2"] and len(calls) == 2 and len(rec.sleeps) == 1

    # After the last attempt and after a non-retryable error too, before raising.
    seen.clear()
    _, fn = failing(Flaky(1), Flaky(4))
    with pytest.raises(Flaky):
        await policy(rec, attempts=2).call(fn, rescue=rescue)
    _, fn = failing(Other("refused"))
    with pytest.raises(Other):
        await policy(rec).call(fn, rescue=rescue)
    assert seen == ["failure 1", "failure 4", "refused"]


async def test_an_error_of_the_rescue_hook_ends_the_call_unretried() -> None:
    rec = Recorder()
    gave_up: list[int] = []
    lookup_failed = Flaky(99)

    async def rescue(exc: Exception) -> str | None:
        raise lookup_failed  # retryable itself, yet the call is not retried

    calls, fn = failing(Flaky(1), Flaky(2))
    with pytest.raises(Flaky) as caught:
        await policy(rec).call(fn, rescue=rescue, gave_up=lambda e, n: gave_up.append(n))
    assert caught.value is lookup_failed and len(calls) == 1
    assert rec.events == [] and gave_up == []


def test_at_least_one_attempt() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RetryPolicy(Flaky, attempts=0, backoff_base=0.1, backoff_max=1)
