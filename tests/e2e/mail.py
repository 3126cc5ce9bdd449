"""A real SMTP server (aiosmtpd) for end-to-end tests, that can be taken down and back up."""

from __future__ import annotations

import email
import email.policy
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


class _Recorder:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.sink.lock:
            self.sink.messages.append(
                email.message_from_bytes(envelope.content, policy=email.policy.default)  # type: ignore[arg-type]
            )
        return "250 OK"


@dataclass
class SmtpSink:
    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.controller = Controller(_Recorder(self), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def for_order(self, order_id: str, kind: str = "delivery") -> list[EmailMessage]:
        """The `kind` emails (delivery, payment_received, ...) that name the order."""
        with self.lock:
            return [
                m
                for m in self.messages
                if str(m["Message-ID"]).strip().startswith(f"<{kind}-") and order_id in text_of(m)
            ]


def text_of(message: EmailMessage) -> str:
    """The decoded text part of a message."""
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())
