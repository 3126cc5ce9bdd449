"""The middlewares every BitLoot app runs, outermost first:

1. `request_id_middleware`: one id per request, bound to the log context and echoed in
   `X-Request-Id` on every response, errors included.
2. `access_log_middleware`: one `http.request` event and the HTTP metrics per request.
   It logs the route template, never the raw path, query string, headers or body, so a
   token can never reach the access log.
3. `error_middleware`: every failure becomes an `application/problem+json` answer; an
   unexpected exception is logged with its traceback and answered with a bare 500 (a 400,
   a malformed request, is a warning).

And two `on_response_prepare` hooks, which see every response the application makes
(streamed ones included): `set_request_id_header` and `set_security_headers`.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import structlog
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from bitloot import metrics
from bitloot.web.errors import (
    ApiError,
    BadRequest,
    Forbidden,
    InternalServerError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    problem_response,
)

log = structlog.get_logger(__name__)

REQUEST_ID_HEADER = "X-Request-Id"
# What the Server header says: no product version to match against vulnerability lists.
SERVER_NAME = "BitLoot"
REQUEST_ID = web.RequestKey("request_id", str)
# Fields a handler adds to the request's one `http.request` line (`add_log_fields`).
LOG_FIELDS = web.RequestKey("log_fields", dict)

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Status recorded when the handler is cancelled (the client went away): nginx's convention.
_CLIENT_CLOSED = 499


def request_id_of(request: web.Request) -> str | None:
    """The id `request_id_middleware` gave this request (None outside the middleware)."""
    return request.get(REQUEST_ID)


def add_log_fields(request: web.Request, **fields: object) -> None:
    """Add fields to this request's `http.request` line: a hot handler says what it did
    there instead of writing a second line (never a secret: the line is logged as is)."""
    request.setdefault(LOG_FIELDS, {}).update(fields)


def _incoming_or_new_id(request: web.Request) -> str:
    # An upstream proxy's id lets one trace span systems; anything odd is replaced, so a
    # client cannot inject log lines or huge values through it.
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    if _SANE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give the request an id, bind it to the log context, echo it on the response."""
    rid = _incoming_or_new_id(request)
    request[REQUEST_ID] = rid
    # bound_contextvars restores the previous context on exit, so ids never leak from one
    # keep-alive request into the next.
    with structlog.contextvars.bound_contextvars(request_id=rid):
        response = await handler(request)
    if not response.prepared:
        response.headers[REQUEST_ID_HEADER] = rid
    return response


async def set_request_id_header(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare` hook: covers streamed responses the middleware sees too late."""
    rid = request.get(REQUEST_ID)
    if rid is not None:
        response.headers[REQUEST_ID_HEADER] = rid


async def set_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare` hook: `nosniff` and a version-less `Server` on every response,
    and `Cache-Control: no-store` on every answer to a request that carried credentials
    (whatever the handler set: a cache must never replay one person's data to another)."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers[hdrs.SERVER] = SERVER_NAME
    if hdrs.AUTHORIZATION in request.headers:
        response.headers[hdrs.CACHE_CONTROL] = "no-store"


def route_template(request: web.Request) -> str:
    """The matched route's canonical path (`/orders/{id}`), or `unmatched`."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def access_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Log `http.request` and record the HTTP metrics once per request."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        # Only redirects and other non-errors get here; errors became responses inside.
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = _CLIENT_CLOSED
        raise
    finally:
        elapsed = time.perf_counter() - started
        route = route_template(request)
        metrics.observe_http_request(request.method, route, status, elapsed)
        log.info(
            "http.request",
            method=request.method,
            route=route,
            status=status,
            duration_ms=round(elapsed * 1000, 2),
            request_id=request.get(REQUEST_ID),
            remote=request.remote,
            **request.get(LOG_FIELDS, {}),
        )


def _problem_for_http_exception(request: web.Request, exc: web.HTTPException) -> ApiError:
    if exc.status == 404:
        return NotFound()
    if exc.status == 405 and isinstance(exc, web.HTTPMethodNotAllowed):
        return MethodNotAllowed(exc.allowed_methods)
    if exc.status == 413:
        return PayloadTooLarge(request.client_max_size)
    known: dict[int, type[ApiError]] = {400: BadRequest, 401: Unauthorized, 403: Forbidden}
    if exc.status in known:
        return known[exc.status]()
    # Anything else keeps aiohttp's status and standard reason, never its text, which
    # may describe internals.
    err = ApiError(title=exc.reason)
    err.status = exc.status
    err.slug = exc.reason.lower().replace(" ", "-") if exc.reason else "error"
    return err


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn `ApiError`s, aiohttp HTTP errors and unexpected exceptions into problem+json."""
    rid = request.get(REQUEST_ID)
    try:
        return await handler(request)
    except ApiError as err:
        if err.status >= 500:
            log.warning("http.error", status=err.status, problem=err.slug, detail=err.detail)
        elif err.status == 400:
            # A malformed request (hostile or broken client); the detail is public text.
            log.warning("http.bad_request", route=route_template(request), detail=err.detail)
        return problem_response(err, rid, instance=request.path)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem_response(
            _problem_for_http_exception(request, exc), rid, instance=request.path
        )
    except Exception:
        # The traceback stays here; the client learns only the request id.
        log.exception("http.unhandled_error", method=request.method, route=route_template(request))
        return problem_response(InternalServerError(), rid, instance=request.path)
