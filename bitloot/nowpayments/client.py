"""A small typed async client for the NOWPayments endpoints a shop needs.

Retries through the providers' shared ``RetryPolicy`` (``bitloot.httpclient``: exponential
backoff with full jitter) on timeouts, connection errors, 429 (honouring ``Retry-After``,
capped at ``retry_after_cap``) and 5xx; any other 4xx fails at once. The API key travels
only in the ``x-api-key`` header: it is never logged, never in an exception message, never
in a repr.
"""

from __future__ import annotations

import json
import random
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import structlog
from pydantic import BaseModel, ValidationError

from bitloot.httpclient import (
    BeforeRetry,
    RetryPolicy,
    SessionClient,
    Sleep,
    parse_retry_after,
)
from bitloot.nowpayments.models import Invoice, PaymentStatus, invalid_fields
from bitloot.nowpayments.signature import RawNumber, dump_json

__all__ = ["NowPaymentsClient", "NowPaymentsError"]

log = structlog.get_logger(__name__)

_MAX_BACKOFF_S = 10.0
_M = TypeVar("_M", bound=BaseModel)


class NowPaymentsError(Exception):
    """A NOWPayments call that failed; ``retryable`` says whether trying later may help."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retryable = retryable
        # Seconds the server asked us to wait (429 Retry-After), as parsed; the retry
        # policy caps its own wait at `retry_after_cap`.
        self.retry_after = retry_after


def _retryable_status(status: int) -> bool:
    return status == 429 or status >= 500


def _log_retry(method: str, path: str) -> BeforeRetry[NowPaymentsError]:
    def before_retry(error: NowPaymentsError, attempt: int, delay: float) -> None:
        log.warning(
            "nowpayments.request_retry",
            method=method,
            path=path,
            attempt=attempt,
            status=error.status,
            code=error.code,
            delay_s=round(delay, 3),
        )

    return before_retry


class NowPaymentsClient(SessionClient):
    """Async NOWPayments API client; use as ``async with NowPaymentsClient(...) as np:``."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10,
        max_attempts: int = 4,
        backoff_base: float = 0.2,
        retry_after_cap: float = 30.0,
        session: aiohttp.ClientSession | None = None,
        rng: random.Random | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        self._retry = RetryPolicy(
            NowPaymentsError,
            retry_if=lambda error: error.retryable,
            attempts=max_attempts,
            backoff_base=backoff_base,
            backoff_max=_MAX_BACKOFF_S,
            retry_after_cap=retry_after_cap,
            rng=rng,
            sleep=sleep,
        )
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._init_session(session)

    def __repr__(self) -> str:
        return f"NowPaymentsClient(base_url={self._base_url!r})"

    async def create_invoice(
        self,
        *,
        price_amount: Decimal,
        price_currency: str,
        order_id: str,
        order_description: str,
        ipn_callback_url: str,
        success_url: str,
        cancel_url: str | None = None,
    ) -> Invoice:
        """Create a hosted payment link (``POST /invoice``, 201)."""
        if not price_amount.is_finite() or price_amount <= 0:
            raise ValueError("price_amount must be a positive finite Decimal")
        body: dict[str, Any] = {
            # Written as a JSON number with the Decimal's own digits: no float on the way.
            "price_amount": RawNumber(format(price_amount, "f")),
            "price_currency": price_currency.lower(),
            "order_id": order_id,
            "order_description": order_description,
            "ipn_callback_url": ipn_callback_url,
            "success_url": success_url,
        }
        if cancel_url is not None:
            body["cancel_url"] = cancel_url
        data = await self._request("POST", "/invoice", body=body, expected=201)
        return self._parse(Invoice, data, "/invoice")

    async def get_payment(self, payment_id: str) -> PaymentStatus:
        """Current state of one payment (``GET /payment/{id}``)."""
        path = f"/payment/{quote(payment_id, safe='')}"
        data = await self._request("GET", path, expected=200)
        return self._parse(PaymentStatus, data, "/payment/{id}")

    async def status(self) -> bool:
        """True when the API answers ``GET /status`` with ``{"message": "OK"}``; no retries."""
        try:
            data = await self._request("GET", "/status", expected=200, attempts=1)
        except NowPaymentsError:
            return False
        return isinstance(data, dict) and data.get("message") == "OK"

    async def _request(
        self,
        method: str,
        path: str,
        *,
        expected: int,
        body: dict[str, Any] | None = None,
        attempts: int | None = None,
    ) -> Any:
        # A retried POST /invoice after a timeout may create a second invoice; that is
        # harmless (an unused link) and NOWPayments offers no idempotency key to prevent it.
        return await self._retry.call(
            lambda: self._attempt(method, path, expected, body),
            attempts=attempts,
            before_retry=_log_retry(method, path),
        )

    async def _attempt(
        self, method: str, path: str, expected: int, body: dict[str, Any] | None
    ) -> Any:
        """One HTTP exchange: the parsed body, or a `NowPaymentsError`."""
        if self._session is None:
            raise RuntimeError("NowPaymentsClient used outside 'async with' and without a session")
        headers = {"x-api-key": self._api_key, "Accept": "application/json"}
        data: str | None = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = dump_json(body)
        try:
            async with self._session.request(
                method, self._base_url + path, data=data, headers=headers, timeout=self._timeout
            ) as resp:
                text = await resp.text()
                if resp.status != expected:
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                    raise self._http_error(method, path, resp.status, text, retry_after)
                return self._decode(text, path, resp.status)
        except TimeoutError:  # aiohttp's timeout errors subclass TimeoutError too
            msg = f"NOWPayments {method} {path} timed out"
            raise NowPaymentsError(msg, code="TIMEOUT", retryable=True) from None
        except aiohttp.ClientError as exc:
            # The aiohttp error is not chained: its request_info holds our headers.
            msg = self._redact(f"NOWPayments {method} {path} failed: {type(exc).__name__}: {exc}")
            raise NowPaymentsError(msg, code="CONNECTION_ERROR", retryable=True) from None

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _decode(self, text: str, path: str, status: int) -> Any:
        try:
            # parse_float=Decimal: amounts reach the models with the digits that were sent.
            return json.loads(text, parse_float=Decimal)
        except ValueError:
            msg = f"NOWPayments {path} answered {status} with a body that is not JSON"
            raise NowPaymentsError(msg, status=status, code="BAD_RESPONSE") from None

    def _http_error(
        self, method: str, path: str, status: int, text: str, retry_after: float | None
    ) -> NowPaymentsError:
        code: str | None = None
        detail = ""
        try:
            payload = json.loads(text)
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            # Error body per docs 2.9: {"status": false, "statusCode", "code", "message"}
            raw_code, raw_message = payload.get("code"), payload.get("message")
            code = raw_code if isinstance(raw_code, str) else None
            detail = raw_message if isinstance(raw_message, str) else ""
        msg = f"NOWPayments {method} {path} answered HTTP {status}"
        if code:
            msg += f" {code}"
        if detail:
            msg += f": {detail[:200]}"
        return NowPaymentsError(
            self._redact(msg),
            status=status,
            code=code,
            retryable=_retryable_status(status),
            retry_after=retry_after,
        )

    def _parse(self, model: type[_M], data: Any, path: str) -> _M:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            msg = f"NOWPayments {path} answered an unexpected shape: {invalid_fields(exc)}"
            raise NowPaymentsError(msg, code="BAD_RESPONSE") from None
