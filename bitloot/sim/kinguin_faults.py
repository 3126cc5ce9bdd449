"""Kinguin simulator: injected faults and the `order.status` webhook sender.

HTTP faults are rules consumed by the API middleware: latency or an error status, applied
`before` the handler runs (the request never takes effect) or `after` it (the order is
placed, then the answer is slow or lost: the ambiguous case a client must survive).
Webhook faults drop, duplicate or reorder the next events.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import aiohttp
import structlog

from bitloot.kinguin.models import dump_json, format_event_time
from bitloot.sim.kinguin_state import StatusEvent

log = structlog.get_logger(__name__)

When = Literal["before", "after"]


@dataclass
class HttpFault:
    """Latency (`seconds`) and/or an error `status` for the next `count` matching calls
    (`count` None: until cleared). `endpoints` are route names such as `place_order`;
    `kind`/`detail` override the error body (e.g. 422 `OrderFailed`)."""

    seconds: float = 0.0
    status: int | None = None
    retry_after: float | None = None
    kind: str | None = None
    detail: str | None = None
    count: int | None = 1
    endpoints: list[str] | None = None
    when: When = "before"

    def matches(self, endpoint: str) -> bool:
        """True if this rule applies to the named endpoint."""
        return self.endpoints is None or endpoint in self.endpoints


@dataclass
class FaultBook:
    """Every fault currently armed."""

    http: list[HttpFault] = field(default_factory=list)
    drop_webhooks: int = 0
    duplicate_webhooks: int = 0
    reorder_webhooks: int = 0

    def take(self, endpoint: str) -> list[HttpFault]:
        """The rules that fire for this call, counting each down."""
        fired = [f for f in self.http if f.matches(endpoint) and f.count != 0]
        for fault in fired:
            if fault.count is not None:
                fault.count -= 1
        self.http = [f for f in self.http if f.count != 0]
        return fired

    def clear(self) -> None:
        """Disarm everything."""
        self.http.clear()
        self.drop_webhooks = self.duplicate_webhooks = self.reorder_webhooks = 0

    def describe(self) -> dict[str, Any]:
        """The armed faults as JSON."""
        return {
            "http": [asdict(f) for f in self.http],
            "drop_webhooks": self.drop_webhooks,
            "duplicate_webhooks": self.duplicate_webhooks,
            "reorder_webhooks": self.reorder_webhooks,
        }


@dataclass
class WebhookTarget:
    """Where and with which secret webhooks go (changeable at run time)."""

    url: str | None
    secret: str


class WebhookSender:
    """Posts `order.status` events, retrying on non-2xx, under the armed faults."""

    def __init__(
        self,
        target: WebhookTarget,
        faults: FaultBook,
        *,
        retry_delays: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.0),
        reorder_window: float = 1.0,
        timeout: float = 5.0,
    ) -> None:
        self.target = target
        self.faults = faults
        self.retry_delays = retry_delays
        self.reorder_window = reorder_window
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.log: list[dict[str, Any]] = []
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: list[StatusEvent] = []
        self._flush_timer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open the HTTP session (inside the running loop)."""
        self._session = aiohttp.ClientSession(timeout=self.timeout)

    async def stop(self) -> None:
        """Cancel pending deliveries and close the session."""
        for task in [*self._tasks, *([self._flush_timer] if self._flush_timer else [])]:
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    def reset(self) -> None:
        """Forget the delivery log and anything held for reordering."""
        self.log.clear()
        self._held.clear()

    def submit(self, events: list[StatusEvent]) -> None:
        """Queue events for delivery, applying drop/duplicate/reorder faults."""
        for event in events:
            if self.faults.drop_webhooks > 0:
                self.faults.drop_webhooks -= 1
                self._record(event, attempt=0, outcome="dropped")
                continue
            copies = 1
            if self.faults.duplicate_webhooks > 0:
                self.faults.duplicate_webhooks -= 1
                copies = 2
            if self.faults.reorder_webhooks > 0:
                self.faults.reorder_webhooks -= 1
                self._held.extend([event] * copies)
                self._arm_flush()
                continue
            for _ in range(copies):
                self._spawn(self._deliver_one(event))

    def _arm_flush(self) -> None:
        if self.faults.reorder_webhooks == 0:
            self._flush()
        elif self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.reorder_window)
        self._flush_timer = None
        self._flush()

    def _flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        held, self._held = self._held, []
        if held:
            # Newest first: the receiver sees a stale status after a newer one.
            self._spawn(self._deliver_in_order(list(reversed(held))))

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver_in_order(self, events: list[StatusEvent]) -> None:
        for event in events:
            await self._deliver_one(event)

    async def _deliver_one(self, event: StatusEvent) -> None:
        if self.target.url is None or self._session is None:
            self._record(event, attempt=0, outcome="no_url")
            return
        body = dump_json(
            {
                "orderId": event.order_id,
                "orderExternalId": event.order_external_id,
                "status": event.status,
                "updatedAt": format_event_time(event.updated_at),
            }
        )
        headers = {
            "Content-Type": "application/json",
            "X-Event-Name": "order.status",
            "X-Event-Secret": self.target.secret,
        }
        for attempt, delay in enumerate((*self.retry_delays, None), start=1):
            status, error = await self._post(self.target.url, body, headers)
            ok = status is not None and 200 <= status < 300
            outcome = "delivered" if ok else ("retrying" if delay is not None else "gave_up")
            self._record(event, attempt=attempt, outcome=outcome, http_status=status, error=error)
            if ok or delay is None:
                return
            await asyncio.sleep(delay)

    async def _post(
        self, url: str, body: str, headers: dict[str, str]
    ) -> tuple[int | None, str | None]:
        assert self._session is not None
        try:
            async with self._session.post(url, data=body, headers=headers) as response:
                await response.read()
                return response.status, None
        except (aiohttp.ClientError, TimeoutError) as exc:
            return None, type(exc).__name__

    def _record(
        self,
        event: StatusEvent,
        *,
        attempt: int,
        outcome: str,
        http_status: int | None = None,
        error: str | None = None,
    ) -> None:
        entry = {
            "orderId": event.order_id,
            "orderExternalId": event.order_external_id,
            "status": event.status,
            "updatedAt": format_event_time(event.updated_at),
            "attempt": attempt,
            "outcome": outcome,
            "httpStatus": http_status,
            "error": error,
        }
        self.log.append(entry)
        log.info("kinguin_sim.webhook", **{k: v for k, v in entry.items() if v is not None})
