"""Typed errors for the Kinguin API, built from its error body (`kind`, `status`, `detail`).

Two branches: `KinguinPermanentError` (retrying the same request cannot help: raise at
once) and `KinguinRetryableError` (timeouts, connection errors, 429, 5xx). Callers usually
only look at `retryable` and `kind`.

Messages hold the kind, the status and Kinguin's `detail`, cut short and scrubbed by the
client of the API key; they never hold a request or a response body, so never a serial.
"""

from __future__ import annotations

from typing import ClassVar

MAX_DETAIL_CHARS = 300


class KinguinError(Exception):
    """Base of every Kinguin failure."""

    retryable: ClassVar[bool] = False
    # Short label for metrics and the client's latency hook.
    outcome: ClassVar[str] = "error"

    def __init__(
        self,
        kind: str,
        status: int | None,
        detail: str,
        *,
        trace: str | None = None,
        property_path: str | None = None,
    ) -> None:
        self.kind = kind
        self.status = status
        self.detail = detail[:MAX_DETAIL_CHARS]
        self.trace = trace
        self.property_path = property_path
        status_text = f"HTTP {status}" if status is not None else "no response"
        super().__init__(f"Kinguin {kind} ({status_text}): {self.detail}")


class KinguinPermanentError(KinguinError):
    """The request was understood and refused; sending it again gives the same answer."""

    outcome = "rejected"


class ConstraintViolationError(KinguinPermanentError):
    """Invalid payload (400), including a reused `orderExternalId` in our simulator."""


class AuthorizationError(KinguinPermanentError):
    """Bad or missing API key, or a non-whitelisted IP (401)."""


class OrderFailedError(KinguinPermanentError):
    """Kinguin could not create the order (422)."""


class ProductUnavailableError(KinguinPermanentError):
    """No offer matches the price and quantity, or the product is gone."""


class InsufficientBalanceError(KinguinPermanentError):
    """The account balance does not cover the order."""


class OrderNotFoundError(KinguinPermanentError):
    """Unknown orderId."""


class KinguinResponseError(KinguinPermanentError):
    """Any other refusal, or a 2xx body that does not match the documented shape."""


class KinguinRetryableError(KinguinError):
    """A transient failure: the same request may succeed later.

    `retry_after` is the server's `Retry-After` hint in seconds, when it sent one (read by
    `bitloot.httpclient.parse_retry_after`; the retry policy caps the wait).
    """

    retryable = True
    outcome = "retryable"

    def __init__(
        self,
        kind: str,
        status: int | None,
        detail: str,
        *,
        retry_after: float | None = None,
        trace: str | None = None,
    ) -> None:
        super().__init__(kind, status, detail, trace=trace)
        self.retry_after = retry_after


class KinguinTimeoutError(KinguinRetryableError):
    """No complete response within the client's timeout."""

    outcome = "timeout"


class KinguinConnectionError(KinguinRetryableError):
    """The connection failed or broke before a response arrived."""

    outcome = "connection_error"

    def __init__(self, detail: str, *, request_sent: bool) -> None:
        super().__init__("Connection", None, detail)
        # False only when no connection was ever made: the request cannot have been seen.
        self.request_sent = request_sent


class RateLimitedError(KinguinRetryableError):
    """HTTP 429 (no limit is documented for the ESA API, but its gateway may send one)."""

    outcome = "rate_limited"


class KinguinServerError(KinguinRetryableError):
    """HTTP 5xx (or the inferred-transient `ResourceLock`)."""

    outcome = "server_error"


PERMANENT_KINDS: dict[str, type[KinguinPermanentError]] = {
    "ConstraintViolation": ConstraintViolationError,
    "Authorization": AuthorizationError,
    "OrderFailed": OrderFailedError,
    "ProductUnavailable": ProductUnavailableError,
    "InsufficientBalance": InsufficientBalanceError,
    "BalanceRequired": InsufficientBalanceError,
    "OrderNotFound": OrderNotFoundError,
}


def classify_error(
    status: int,
    kind: str | None,
    detail: str,
    *,
    trace: str | None = None,
    property_path: str | None = None,
    retry_after: float | None = None,
    not_found: type[KinguinPermanentError] = KinguinResponseError,
) -> KinguinError:
    """Map an HTTP status and a body `kind` to the matching error.

    A documented kind wins over the status; otherwise 429 and 5xx are retryable, 401 is
    `AuthorizationError`, 404 is `not_found` (the endpoint knows what was missing), and
    anything else is a permanent `KinguinResponseError`.
    """
    label = kind or f"HTTP{status}"
    if kind in PERMANENT_KINDS:
        cls = PERMANENT_KINDS[kind]
        return cls(label, status, detail, trace=trace, property_path=property_path)
    if status == 429:
        return RateLimitedError(label, status, detail, retry_after=retry_after, trace=trace)
    # ResourceLock (a version conflict, UNCONFIRMED status) reads as transient (inferred).
    if status >= 500 or kind == "ResourceLock":
        return KinguinServerError(label, status, detail, retry_after=retry_after, trace=trace)
    if status == 401:
        return AuthorizationError(label, status, detail, trace=trace)
    if status == 404:
        return not_found(label, status, detail, trace=trace, property_path=property_path)
    return KinguinResponseError(label, status, detail, trace=trace, property_path=property_path)
