"""Logging: secrets redacted at any depth, JWTs scrubbed from text, stdlib routed through
the same renderer, and the bound context on every line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from bitloot.auth.order_tokens import new_token
from bitloot.logs import (
    REDACTED,
    REDACTED_JWT,
    REDACTED_ORDER_TOKEN,
    configure_logging,
    is_secret_key,
    redact,
)

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJ1c2VyLTEiLCJleHAiOjE3MDAwMDAwMDB9."
    "c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU"
)

Configure = Callable[..., io.StringIO]


@pytest.fixture
def configure() -> Iterator[Configure]:
    """Configure logging into a buffer; the previous configuration is restored after."""
    saved_config = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level

    def _configure(fmt: str = "json", **kwargs: Any) -> io.StringIO:
        stream = io.StringIO()
        configure_logging(fmt, stream=stream, **kwargs)  # type: ignore[arg-type]
        return stream

    yield _configure
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    structlog.configure(**saved_config)
    structlog.contextvars.clear_contextvars()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_nested_secret_keys_are_redacted(configure: Configure) -> None:
    stream = configure()
    structlog.get_logger("t").info(
        "delivery.prepared",
        token="tok-123",
        payload={
            "orderId": "o-1",
            "keys": [{"keyId": "k-1", "dataKey": "dk-secret", "signedUrl": "https://r2/x?sig=1"}],
            "headers": {"Authorization": "Bearer abc", "X-Nowpayments-Sig": "sig-value"},
            "inner": {"deeper": {"Serial": "AAAA-BBBB-CCCC", "plaintext": "pt"}},
        },
    )
    (line,) = lines(stream)
    assert line["token"] == REDACTED
    payload = line["payload"]
    assert payload["orderId"] == "o-1"
    assert payload["keys"][0] == {"keyId": "k-1", "dataKey": REDACTED, "signedUrl": REDACTED}
    assert payload["headers"] == {"Authorization": REDACTED, "X-Nowpayments-Sig": REDACTED}
    assert payload["inner"]["deeper"] == {"Serial": REDACTED, "plaintext": REDACTED}
    for secret in ("tok-123", "dk-secret", "sig=1", "abc", "sig-value", "AAAA", 'pt"'):
        assert secret not in stream.getvalue()


@pytest.mark.parametrize(
    "name",
    [
        "serial",
        "KEY",
        "plaintext",
        "data_key",
        "dataKey",
        "token",
        "access_token",
        "accessToken",
        "Authorization",
        "password",
        "secret",
        "api_key",
        "X-API-KEY",
        "x-nowpayments-sig",
        "X-Event-Secret",
        "master_keys",
        "signedUrl",
        "signed_url",
        "smtp_url",
        "DATABASE_URL",
        "ipn_secret",
        "order_token",
    ],
)
def test_secret_names_are_recognised_in_any_case(name: str) -> None:
    assert is_secret_key(name)


@pytest.mark.parametrize("name", ["keyId", "key_id", "order_id", "monkey", "status", "route"])
def test_ordinary_names_are_kept(name: str) -> None:
    assert not is_secret_key(name)


def test_jwt_in_the_message_and_values_is_scrubbed(configure: Configure) -> None:
    stream = configure()
    structlog.get_logger("t").info(f"got a token {JWT} in the body", note=f"url #token={JWT}")
    (line,) = lines(stream)
    assert JWT not in stream.getvalue()
    assert line["event"] == f"got a token {REDACTED_JWT} in the body"
    assert REDACTED_JWT in line["note"]


def test_order_access_tokens_are_scrubbed(configure: Configure) -> None:
    token = new_token()
    stream = configure()
    structlog.get_logger("t").info(
        f"link /orders/1/key#token={token}", note=f"Bearer {token}", cut=token[:30]
    )
    (line,) = lines(stream)
    assert token[5:] not in stream.getvalue() and token[5:30] not in stream.getvalue()
    assert line["event"] == f"link /orders/1/key#token={REDACTED_ORDER_TOKEN}"
    assert line["note"] == f"Bearer {REDACTED_ORDER_TOKEN}"
    assert line["cut"] == REDACTED_ORDER_TOKEN
    assert redact("blot_ and blot_x are words") == "blot_ and blot_x are words"


def test_dotted_names_are_not_mistaken_for_jwts() -> None:
    text = "bitloot.web.middleware at api.nowpayments.io v1.2.3"
    assert redact(text) == text


def test_url_passwords_are_scrubbed(configure: Configure) -> None:
    stream = configure()
    structlog.get_logger("t").warning("smtp failed", target="smtp://mailer:hunter2@mx.example:587")
    assert "hunter2" not in stream.getvalue()
    assert "smtp://mailer:[redacted]@mx.example:587" in stream.getvalue()


def test_stdlib_logging_goes_through_the_same_renderer(configure: Configure) -> None:
    stream = configure()
    logging.getLogger("aiohttp.server").error("handler failed for %s", JWT)
    (line,) = lines(stream)
    assert line["logger"] == "aiohttp.server"
    assert line["level"] == "error"
    assert line["event"] == f"handler failed for {REDACTED_JWT}"
    assert "timestamp" in line


def test_bound_context_is_on_every_line(configure: Configure) -> None:
    stream = configure()
    with structlog.contextvars.bound_contextvars(request_id="r-1", order_id="o-1", job_id=7):
        structlog.get_logger("t").info("one")
        logging.getLogger("procrastinate.worker").warning("two")
    structlog.get_logger("t").info("three")
    one, two, three = lines(stream)
    for line in (one, two):
        assert (line["request_id"], line["order_id"], line["job_id"]) == ("r-1", "o-1", 7)
    assert "request_id" not in three


def test_exception_tracebacks_are_scrubbed(configure: Configure) -> None:
    stream = configure()
    try:
        raise ValueError(f"bad token {JWT}")
    except ValueError:
        structlog.get_logger("t").exception("failed")
    (line,) = lines(stream)
    assert "ValueError" in line["exception"]
    assert JWT not in stream.getvalue()


def test_console_format_redacts_too(configure: Configure) -> None:
    stream = configure("console")
    log = structlog.get_logger("t")
    log.info("hello", password="pw-123", note=JWT)
    try:
        raise RuntimeError(JWT)
    except RuntimeError:
        log.exception("boom")
    out = stream.getvalue()
    assert "hello" in out and "RuntimeError" in out
    assert "pw-123" not in out
    assert JWT not in out


def test_level_filters_debug(configure: Configure) -> None:
    stream = configure(level="INFO")
    structlog.get_logger("t").debug("hidden")
    logging.getLogger("other").debug("hidden too")
    structlog.get_logger("t").info("shown")
    assert [line["event"] for line in lines(stream)] == ["shown"]


def test_reconfiguring_replaces_the_handler(configure: Configure) -> None:
    first = configure()
    second = configure()
    structlog.get_logger("t").info("once")
    assert first.getvalue() == ""
    assert len(lines(second)) == 1


def test_redact_does_not_mutate_its_input() -> None:
    original = {"token": "t", "nested": {"key": "k"}}
    assert redact(original) == {"token": REDACTED, "nested": {"key": REDACTED}}
    assert original == {"token": "t", "nested": {"key": "k"}}
