"""Logging: structlog everywhere, one renderer for our events and the stdlib's (aiohttp, ...).

Production writes JSON lines to stderr; a person at a terminal gets the console renderer.
Context bound with `structlog.contextvars.bind_contextvars(request_id=..., order_id=...)`
shows on every line. A redaction processor is the last step before rendering, so no key
named like a secret and no JWT-looking string or order access token (`blot_...`) reaches
the output, whoever logged it.
"""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, ExcInfo, Processor, WrappedLogger

REDACTED = "[redacted]"
REDACTED_JWT = "[redacted-jwt]"
REDACTED_ORDER_TOKEN = "[redacted-order-token]"  # noqa: S105 - a placeholder

# Compared after lower-casing and dropping `-` and `_`, so `dataKey`, `data_key` and
# `data-key` are one name.
_SECRET_KEYS = frozenset(
    name.lower().replace("-", "").replace("_", "")
    for name in (
        "serial",
        "key",
        "plaintext",
        "data_key",
        "token",
        "access_token",
        "authorization",
        "password",
        "secret",
        "api_key",
        "x-api-key",
        "x-nowpayments-sig",
        "x-event-secret",
        "master_keys",
        "signed_url",
        "smtp_url",
        "database_url",
        "private_key",
        "cookie",
        "set-cookie",
    )
)
# Names that end like these are secrets too (`ipn_secret`, `order_token`, `kinguin_api_key`).
_SECRET_SUFFIXES = ("secret", "password", "token", "apikey", "privatekey")

# A JWS compact serialisation: three base64url segments, the first a JSON header (`{"`
# encodes to `eyJ`). Anchoring on `eyJ` keeps host names and dotted module paths intact.
_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*")
# An order access token (bitloot.auth.order_tokens): its prefix and base64url; matched from
# 16 characters on, so a truncated or mangled one is hidden too.
_ORDER_TOKEN_RE = re.compile(r"blot_[A-Za-z0-9_-]{16,}")
# `scheme://user:password@host`: the password part of a URL (SMTP, database).
_URL_PASSWORD_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@")
# Keys structlog uses for its own bookkeeping; never rewritten.
_PASSTHROUGH_KEYS = frozenset({"exc_info", "_record", "_from_structlog"})


def is_secret_key(name: str) -> bool:
    """True when a field called `name` must never be logged with its value."""
    norm = name.lower().replace("-", "").replace("_", "")
    return norm in _SECRET_KEYS or norm.endswith(_SECRET_SUFFIXES)


def scrub_text(text: str) -> str:
    """`text` with JWT-looking strings, order access tokens and URL passwords replaced."""
    if "eyJ" in text:
        text = _JWT_RE.sub(REDACTED_JWT, text)
    if "blot_" in text:
        text = _ORDER_TOKEN_RE.sub(REDACTED_ORDER_TOKEN, text)
    if "://" in text:
        text = _URL_PASSWORD_RE.sub(rf"\g<1>{REDACTED}@", text)
    return text


def redact(value: Any) -> Any:
    """A copy of `value` with secret-named keys (at any depth) and JWT-looking strings hidden."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return {
            k: REDACTED if isinstance(k, str) and is_secret_key(k) else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(item) for item in value]
    return value


def redact_processor(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: redact every field of the event (see `redact`)."""
    out: EventDict = {}
    for key, value in event_dict.items():
        if key in _PASSTHROUGH_KEYS:
            out[key] = value
        elif is_secret_key(key):
            out[key] = REDACTED
        else:
            out[key] = redact(value)
    return out


def _scrubbed_traceback(sio: TextIO, exc_info: ExcInfo) -> None:
    # The console renderer formats exceptions itself, after our processors ran.
    buf = io.StringIO()
    structlog.dev.plain_traceback(buf, exc_info)
    sio.write(scrub_text(buf.getvalue()))


def _json_default(obj: object) -> str:
    # UUIDs, Decimals, datetimes and paths read better as their str() than their repr().
    if isinstance(obj, BaseException | TracebackType):
        return repr(obj)
    return str(obj)


def _renderer(fmt: Literal["json", "console"], stream: TextIO) -> list[Processor]:
    if fmt == "json":
        return [
            structlog.processors.format_exc_info,
            redact_processor,
            structlog.processors.JSONRenderer(serializer=json.dumps, default=_json_default),
        ]
    colors = bool(getattr(stream, "isatty", lambda: False)())
    return [
        redact_processor,
        structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=_scrubbed_traceback),
    ]


class _BitlootHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler we install, so a second `configure_logging` replaces it."""


def configure_logging(
    fmt: Literal["json", "console"] | None,
    *,
    level: str | int = "INFO",
    stream: TextIO | None = None,
) -> None:
    """Route structlog and stdlib logging through one redacting renderer on `stream` (stderr).

    `fmt=None` picks the console renderer when the stream is a terminal, JSON otherwise.
    """
    out = stream if stream is not None else sys.stderr
    if fmt is None:
        fmt = "console" if getattr(out, "isatty", lambda: False)() else "json"
    numeric = level if isinstance(level, int) else logging.getLevelNamesMapping()[level.upper()]

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # Not cached: tests (ours and others') use structlog.testing.capture_logs, which
        # only sees loggers that look the configuration up again.
        cache_logger_on_first_use=False,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *_renderer(fmt, out),
        ],
    )
    handler = _BitlootHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _BitlootHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # aiohttp's access logger writes the raw request line, query string included (and so
    # any token in it). Our middleware logs each request without it; this one stays quiet
    # even when an app is run by something that did not pass `access_log=None`.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # procrastinate logs three INFO lines per job ("Deferred", "Starting", "ended"); our own
    # job events say what happened, so only its warnings and errors are kept.
    logging.getLogger("procrastinate").setLevel(logging.WARNING)
