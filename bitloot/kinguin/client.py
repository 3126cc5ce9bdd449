"""Async client of the Kinguin eCommerce (ESA) API (docs/external-apis.md, Part 1).

Transport, typed errors (`bitloot.kinguin.errors`) and retries. Every call sends
`X-Api-Key`, has a timeout, and is retried by the providers' shared `RetryPolicy`
(`bitloot.httpclient`: exponential backoff with full jitter on timeouts, connection errors,
429 and 5xx, honouring `Retry-After` capped at `backoff_max * 4`). Permanent errors raise
at once.

`place_order` is the one call that is not safe to repeat blindly: after a timeout or a 5xx
the order may exist even though we never saw the answer, and a reused `orderExternalId` is
refused (as `ConstraintViolation` or `OrderFailed`: the exact kind is UNCONFIRMED). So after
any such failure its retry calls the caller's required `recover` hook before anything else
and returns the order the hook finds; only when there is none is the POST sent again. The
rule of how that order is found, and why it keeps a purchase exactly-once, lives in
`bitloot.fulfillment.purchase` (`recover_placed`), not here.
"""

from __future__ import annotations

import contextlib
import contextvars
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import structlog
from pydantic import BaseModel, ValidationError

from bitloot.httpclient import Rescue, RetryPolicy, SessionClient, Sleep, parse_retry_after
from bitloot.kinguin.errors import (
    ConstraintViolationError,
    KinguinConnectionError,
    KinguinError,
    KinguinPermanentError,
    KinguinResponseError,
    KinguinRetryableError,
    KinguinTimeoutError,
    OrderFailedError,
    OrderNotFoundError,
    ProductUnavailableError,
    classify_error,
)
from bitloot.kinguin.models import (
    Balance,
    ErrorBody,
    Key,
    Order,
    OrderProductRequest,
    OrderSearchResult,
    PlaceOrderRequest,
    Product,
    ReturnedKey,
    dump_json,
    load_json,
)

log = structlog.get_logger(__name__)

OnCall = Callable[[str, float, str], None]
"""Latency hook: `(endpoint, seconds, outcome)` once per HTTP attempt; outcome `ok` or an
error's `outcome` label (`timeout`, `connection_error`, `rate_limited`, ...). The same
attempt with its details (`KinguinCall`) goes to the observers of `observe_calls`."""


@dataclass(frozen=True)
class KinguinCall:
    """One HTTP attempt, as the client's hooks report it.

    `outcome` is the metrics label (`ok`, `timeout`, `connection_error`, `rate_limited`,
    `server_error`, `rejected`); `error_code` the failed attempt's kind (Kinguin's error
    code, or `Timeout`, `Connection`, `InvalidResponse`, `HTTP503`...); `attempt` is 1 for
    the first try of a client call and counts its retries.
    """

    endpoint: str
    seconds: float
    outcome: str
    attempt: int
    http_status: int | None = None
    error_code: str | None = None


CallObserver = Callable[[KinguinCall], None]
_observers: contextvars.ContextVar[tuple[CallObserver, ...]] = contextvars.ContextVar(
    "kinguin_call_observers", default=()
)


@contextlib.contextmanager
def observe_calls(observer: CallObserver) -> Iterator[None]:
    """Within this block, and in the current asyncio task only (a context variable, so
    one client shared by concurrent jobs keeps their calls apart), every HTTP attempt of
    any `KinguinClient` is also reported to `observer`. Its failures are logged, never
    raised."""
    token = _observers.set((*_observers.get(), observer))
    try:
        yield
    finally:
        _observers.reset(token)


RecoverHook = Callable[[KinguinError], Awaitable[Order | None]]
"""Called by `place_order` after an ambiguous failure or a duplicate-like refusal, before
any re-send: the order that already exists for the external id, or None. The rule is
`bitloot.fulfillment.purchase.recover_placed`."""

KEYS_PAGE_LIMIT = 100  # the documented maximum page size
MAX_KEY_PAGES = 200  # far beyond 10 products x 1000 wholesale units / 100 per page

ModelT = TypeVar("ModelT", bound=BaseModel)
T = TypeVar("T")


@dataclass(frozen=True)
class _Call:
    endpoint: str
    method: str
    path: str
    params: Mapping[str, str] | None = None
    body: str | None = None
    not_found: type[KinguinPermanentError] = KinguinResponseError


class KinguinClient(SessionClient):
    """Kinguin ESA API client; use as `async with KinguinClient(url, key) as kinguin:`.

    `base_url` includes the API prefix, e.g. `https://gateway.kinguin.net/esa/api` or the
    simulator's `http://127.0.0.1:PORT/kinguin`. `timeout` is per HTTP attempt, in seconds.
    A given `session` is used as is and left open; otherwise the client owns one.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10,
        max_attempts: int = 5,
        backoff_base: float = 0.2,
        backoff_max: float = 5,
        session: aiohttp.ClientSession | None = None,
        on_call: OnCall | None = None,
        rng: random.Random | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("Kinguin api_key is empty")
        self._retry = RetryPolicy(
            KinguinRetryableError,
            attempts=max_attempts,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            rng=rng,
            sleep=sleep,
        )
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._init_session(session, self._timeout)
        self._on_call = on_call

    def __repr__(self) -> str:
        return f"KinguinClient(base_url={self._base_url!r})"

    # --- the API ----------------------------------------------------------------------

    async def place_order(
        self,
        products: list[OrderProductRequest],
        order_external_id: str,
        *,
        recover: RecoverHook,
    ) -> Order:
        """Place an order (`POST /v2/order`, 201), never twice for one external id.

        After an ambiguous failure (timeout, broken connection, 429/5xx) or a
        `ConstraintViolation`/`OrderFailed` refusal, `recover` is asked first and the order
        it finds is returned; the POST is only re-sent when it finds none and the failure
        was retryable.
        """
        try:
            request = PlaceOrderRequest(products=products, order_external_id=order_external_id)
        except ValidationError as exc:
            raise ConstraintViolationError("ConstraintViolation", None, _summarise(exc)) from None
        call = _Call("place_order", "POST", "/v2/order", body=dump_json(request.to_wire()))

        async def attempt(number: int) -> Order:
            order = _parse(Order, await self._send(call, number))
            log.info(
                "kinguin.order_placed",
                order_id=order.order_id,
                order_external_id=order_external_id,
                status=order.status,
            )
            return order

        async def rescue(exc: Exception) -> Order | None:
            if isinstance(exc, ConstraintViolationError | OrderFailedError) or (
                isinstance(exc, KinguinRetryableError) and _may_have_reached_kinguin(exc)
            ):
                return await recover(exc)
            return None

        return await self._with_retries(call.endpoint, attempt, rescue=rescue)

    async def get_order(self, order_id: str) -> Order:
        """Fetch one order (`GET /v1/order/{orderId}`); unknown ids raise OrderNotFoundError."""
        path = f"/v1/order/{quote(order_id, safe='')}"
        data = await self._call(_Call("get_order", "GET", path, not_found=OrderNotFoundError))
        return _parse(Order, data)

    async def find_order_by_external_id(self, external_id: str) -> Order | None:
        """Search orders by our reference (`GET /v1/order?orderExternalId=`); None if absent."""
        params = {"orderExternalId": external_id, "page": "1", "limit": "100"}
        data = await self._call(_Call("find_order", "GET", "/v1/order", params=params))
        # Whether the filter is exact or a prefix match is undocumented: compare ourselves.
        matches = [
            order
            for order in _parse(OrderSearchResult, data).results
            if order.order_external_id == external_id
        ]
        if len(matches) > 1:
            log.warning(
                "kinguin.duplicate_external_id",
                order_external_id=external_id,
                order_ids=[o.order_id for o in matches],
            )
        return matches[0] if matches else None

    async def get_keys(self, order_id: str, *, page_size: int = KEYS_PAGE_LIMIT) -> list[Key]:
        """Every key delivered so far (`GET /v2/order/{id}/keys`), paging to a short page."""
        if not 1 <= page_size <= KEYS_PAGE_LIMIT:
            raise ValueError(f"page_size must be between 1 and {KEYS_PAGE_LIMIT}")
        path = f"/v2/order/{quote(order_id, safe='')}/keys"
        keys: list[Key] = []
        seen: set[str] = set()
        for page in range(1, MAX_KEY_PAGES + 1):
            params = {"page": str(page), "limit": str(page_size)}
            call = _Call("get_keys", "GET", path, params=params, not_found=OrderNotFoundError)
            batch = _parse_keys(await self._call(call))
            # A key delivered between two pages may shift the list: keep each id once.
            for key in batch:
                if key.id not in seen:
                    seen.add(key.id)
                    keys.append(key)
            if len(batch) < page_size:
                return keys
        raise KinguinResponseError("InvalidResponse", None, "too many pages of keys")

    async def return_keys(self, order_id: str) -> list[ReturnedKey]:
        """Ask Kinguin to take back an order's keys (`POST /v2/order/{orderId}/keys/return`,
        200 `[{id, status}]`): every key that qualifies is returned and refunded.

        Kinguin allows one such request per order: a second one, or a key already claimed,
        more than 24 h since delivery, a wholesale item or a pre-order, is refused (kind
        `NoKeysToReturn`, a `KinguinResponseError`). Retried like every call on timeouts and
        5xx; a retry after a request that did reach Kinguin is then refused as a second
        request, so the caller asks `get_order` for the keys' statuses when in doubt.
        """
        path = f"/v2/order/{quote(order_id, safe='')}/keys/return"
        call = _Call("return_keys", "POST", path, body="{}", not_found=OrderNotFoundError)
        data = await self._call(call)
        if not isinstance(data, list):
            raise KinguinResponseError("InvalidResponse", None, "return response is not an array")
        return [_parse(ReturnedKey, item) for item in data]

    async def get_product(self, product_id: str) -> Product:
        """Fetch a product by its string id (`GET /v2/products/{productId}`).

        Kinguin may answer 404 for an unavailable product: that is ProductUnavailableError.
        """
        path = f"/v2/products/{quote(product_id, safe='')}"
        call = _Call("get_product", "GET", path, not_found=ProductUnavailableError)
        return _parse(Product, await self._call(call))

    async def get_balance(self) -> Decimal:
        """The account balance in EUR (`GET /v1/balance`)."""
        data = await self._call(_Call("get_balance", "GET", "/v1/balance"))
        return _parse(Balance, data).balance

    # --- transport --------------------------------------------------------------------

    async def _call(self, call: _Call) -> Any:
        """Send with retries on retryable errors; return the parsed JSON body."""
        return await self._with_retries(call.endpoint, lambda number: self._send(call, number))

    async def _with_retries(
        self,
        endpoint: str,
        attempt: Callable[[int], Awaitable[T]],
        *,
        rescue: Rescue[T] | None = None,
    ) -> T:
        tries = 0

        async def numbered() -> T:
            nonlocal tries
            tries += 1
            return await attempt(tries)

        def before_retry(exc: KinguinRetryableError, failed: int, delay: float) -> None:
            log.warning(
                "kinguin.request_retry",
                endpoint=endpoint,
                attempt=failed,
                delay=round(delay, 3),
                kind=exc.kind,
                status=exc.status,
            )

        def gave_up(exc: KinguinRetryableError, attempts: int) -> None:
            log.warning(
                "kinguin.request_failed",
                endpoint=endpoint,
                attempts=attempts,
                kind=exc.kind,
                status=exc.status,
            )

        return await self._retry.call(
            numbered, before_retry=before_retry, gave_up=gave_up, rescue=rescue
        )

    async def _send(self, call: _Call, attempt: int = 1) -> Any:
        """One HTTP attempt: the parsed 2xx body, or a classified KinguinError."""
        headers = {"X-Api-Key": self._api_key, "Accept": "application/json"}
        if call.body is not None:
            headers["Content-Type"] = "application/json"
        started = time.monotonic()
        outcome = "ok"
        status: int | None = None
        error_code: str | None = None
        try:
            status, raw, retry_after = await self._exchange(call, headers)
            if 200 <= status < 300:
                try:
                    return load_json(raw)
                except ValueError:
                    raise KinguinResponseError(
                        "InvalidResponse", status, "response body is not JSON"
                    ) from None
            raise self._error_from_response(status, raw, retry_after, call.not_found)
        except KinguinError as exc:
            outcome = exc.outcome
            status = exc.status if exc.status is not None else status
            error_code = exc.kind
            raise
        finally:
            self._report(
                KinguinCall(
                    call.endpoint,
                    time.monotonic() - started,
                    outcome,
                    attempt,
                    http_status=status,
                    error_code=error_code,
                )
            )

    async def _exchange(
        self, call: _Call, headers: dict[str, str]
    ) -> tuple[int, bytes, str | None]:
        session = self._ensure_session()
        try:
            async with session.request(
                call.method,
                self._base_url + call.path,
                params=call.params,
                data=call.body,
                headers=headers,
                timeout=self._timeout,
                raise_for_status=False,
            ) as response:
                raw = await response.read()
                return response.status, raw, response.headers.get("Retry-After")
        except TimeoutError:
            detail = f"no response within {self._timeout.total}s"
            raise KinguinTimeoutError("Timeout", None, detail) from None
        except aiohttp.ClientConnectorError as exc:
            detail = self._scrub(f"cannot connect: {exc}")
            raise KinguinConnectionError(detail, request_sent=False) from None
        except aiohttp.ClientError as exc:
            detail = self._scrub(f"{type(exc).__name__}: {exc}")
            raise KinguinConnectionError(detail, request_sent=True) from None

    def _error_from_response(
        self,
        status: int,
        raw: bytes,
        retry_after: str | None,
        not_found: type[KinguinPermanentError],
    ) -> KinguinError:
        body = ErrorBody()
        try:
            data = load_json(raw)
            if isinstance(data, dict):
                body = ErrorBody.model_validate(data)
        except (ValueError, ValidationError):
            pass  # a gateway's HTML error page: classify by status alone
        detail = body.detail or body.type or body.title or f"HTTP {status}"
        return classify_error(
            status,
            body.kind,
            self._scrub(detail),
            trace=body.trace,
            property_path=body.property_path,
            retry_after=parse_retry_after(retry_after),
            not_found=not_found,
        )

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***")

    # --- reporting --------------------------------------------------------------------

    def _report(self, call: KinguinCall) -> None:
        # Metrics and audit records must never break a purchase: failures are only logged.
        if self._on_call is not None:
            try:
                self._on_call(call.endpoint, call.seconds, call.outcome)
            except Exception:
                log.exception("kinguin.on_call_hook_failed", endpoint=call.endpoint)
        for observer in _observers.get():
            try:
                observer(call)
            except Exception:
                log.exception("kinguin.call_observer_failed", endpoint=call.endpoint)


def _may_have_reached_kinguin(exc: KinguinRetryableError) -> bool:
    # Only a refused connection proves the order was never seen; everything else
    # (timeout, dropped connection, 429 from a proxy, 5xx) might follow a placed order.
    return not (isinstance(exc, KinguinConnectionError) and not exc.request_sent)


def _summarise(exc: ValidationError) -> str:
    # Locations and error types only: the input (perhaps a serial) is never quoted.
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['type']}"
        for err in exc.errors(include_input=False, include_url=False)[:5]
    ]
    return "; ".join(parts)


def _parse(model: type[ModelT], data: Any) -> ModelT:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        detail = f"unexpected {model.__name__}: {_summarise(exc)}"
        raise KinguinResponseError("InvalidResponse", None, detail) from None


def _parse_keys(data: Any) -> list[Key]:
    if not isinstance(data, list):
        raise KinguinResponseError("InvalidResponse", None, "keys response is not an array")
    return [_parse(Key, item) for item in data]
