"""Domain errors that know their HTTP answer, and the RFC 9457 problem+json response.

Everything an `ApiError` carries (title, detail, extras) is PUBLIC: it goes to the client
verbatim. Internals (exception text, SQL, provider bodies) belong in the structured log,
never here. `str(err)` is the public detail too, so logging an ApiError leaks nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiohttp import web
from pydantic import ValidationError

PROBLEM_BASE = "https://bitloot.dev/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"

# Members of the problem object that extras can never overwrite.
_RESERVED = frozenset({"type", "title", "status", "detail", "instance", "requestId"})


class ApiError(Exception):
    """Base of every error the API answers with a problem document (500 unless overridden)."""

    status: int = 500
    slug: str = "internal-error"
    title: str = "Internal server error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        title: str | None = None,
        retry_after: float | None = None,
        extras: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if title is not None:
            self.title = title
        self.detail = detail
        self.extras: dict[str, Any] = dict(extras or {})
        self.headers: dict[str, str] = dict(headers or {})
        if retry_after is not None:
            seconds = max(0, math.ceil(retry_after))
            self.headers["Retry-After"] = str(seconds)
            self.extras["retryAfter"] = seconds
        super().__init__(detail or self.title)

    @property
    def type_uri(self) -> str:
        """The stable `type` member: `PROBLEM_BASE` + the slug."""
        return PROBLEM_BASE + self.slug


class InternalServerError(ApiError):
    """500: something we did not expect; the body says nothing about what."""

    def __init__(self) -> None:
        super().__init__("An unexpected error occurred. Quote the request id when reporting it.")


class BadRequest(ApiError):
    """400: the request is malformed (bad JSON, a bad query parameter)."""

    status = 400
    slug = "bad-request"
    title = "Bad request"


class Unauthorized(ApiError):
    """401: no credentials, or credentials we do not accept. Carries `WWW-Authenticate`."""

    status = 401
    slug = "unauthorized"
    title = "Authentication required"

    def __init__(self, detail: str | None = None, *, invalid_token: bool = False) -> None:
        # RFC 6750 section 3: name the error only when a token was actually presented.
        challenge = 'Bearer realm="bitloot"'
        if invalid_token:
            challenge += ', error="invalid_token"'
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class Forbidden(ApiError):
    """403: we know who is asking, and they may not do this."""

    status = 403
    slug = "forbidden"
    title = "Forbidden"


class NotFound(ApiError):
    """404: no such resource (or one the caller may not know exists)."""

    status = 404
    slug = "not-found"
    title = "Not found"


class MethodNotAllowed(ApiError):
    """405: the route exists, the method does not. Carries `Allow`."""

    status = 405
    slug = "method-not-allowed"
    title = "Method not allowed"

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        methods = sorted(set(allowed))
        super().__init__(
            headers={"Allow": ", ".join(methods)} if methods else None,
            extras={"allowed": methods} if methods else None,
        )


class Conflict(ApiError):
    """409: the resource is not in a state that allows this (yet)."""

    status = 409
    slug = "conflict"
    title = "Conflict"


class PayloadTooLarge(ApiError):
    """413: the body is over the configured limit."""

    status = 413
    slug = "payload-too-large"
    title = "Request body too large"

    def __init__(self, max_bytes: int | None = None) -> None:
        detail = None if max_bytes is None else f"The request body exceeds {max_bytes} bytes."
        super().__init__(detail, extras={"maxBytes": max_bytes} if max_bytes is not None else None)


class UnprocessableEntity(ApiError):
    """422: well-formed but invalid input; `errors` lists `{loc, msg}` per problem."""

    status = 422
    slug = "validation-error"
    title = "Validation failed"

    def __init__(self, errors: Sequence[Mapping[str, Any]] = (), detail: str | None = None) -> None:
        self.errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in errors
        ]
        super().__init__(detail, extras={"errors": self.errors})

    @classmethod
    def from_validation_error(
        cls, exc: ValidationError, *, location: str = "body"
    ) -> UnprocessableEntity:
        """Build from a pydantic error: the location and the rule, never the input value."""
        errors = [
            {"loc": [location, *err["loc"]], "msg": err["msg"]}
            for err in exc.errors(include_input=False, include_url=False, include_context=False)
        ]
        return cls(errors)


class TooManyRequests(ApiError):
    """429: rate limited; `retry_after` seconds become `Retry-After`."""

    status = 429
    slug = "too-many-requests"
    title = "Too many requests"

    def __init__(self, detail: str | None = None, *, retry_after: float) -> None:
        super().__init__(detail, retry_after=retry_after)


class BadGateway(ApiError):
    """502: an upstream provider (Kinguin, NOWPayments) failed; the client may retry."""

    status = 502
    slug = "bad-gateway"
    title = "Upstream provider failed"

    def __init__(self, detail: str | None = None, *, retry_after: float | None = 30) -> None:
        super().__init__(
            detail or "A payment or key provider did not answer correctly; retry later.",
            retry_after=retry_after,
            extras={"retryable": True},
        )


class ServiceUnavailable(ApiError):
    """503: we cannot serve right now (database down, shutting down)."""

    status = 503
    slug = "service-unavailable"
    title = "Service unavailable"

    def __init__(self, detail: str | None = None, *, retry_after: float | None = None) -> None:
        super().__init__(detail, retry_after=retry_after)


def problem_response(
    err: ApiError, request_id: str | None, *, instance: str | None = None
) -> web.Response:
    """`err` as an `application/problem+json` response, with its headers."""
    body: dict[str, Any] = {k: v for k, v in err.extras.items() if k not in _RESERVED}
    body.update(
        type=err.type_uri,
        title=err.title,
        status=err.status,
        detail=err.detail or err.title,
    )
    if instance is not None:
        body["instance"] = instance
    body["requestId"] = request_id
    headers = dict(err.headers)
    # Problem documents describe one request; a shared cache must never replay them.
    headers.setdefault("Cache-Control", "no-store")
    return web.json_response(
        body, status=err.status, headers=headers, content_type=PROBLEM_CONTENT_TYPE
    )
