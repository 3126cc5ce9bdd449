"""How an email leaves: SMTP (`BITLOOT_SMTP_URL`) or `.eml` files in a folder (`BITLOOT_MAIL_DIR`).

Every failure becomes a `MailError` whose message is safe to store and show to admins: it
never holds the SMTP URL or its password. `RetryableMailError` is the transient kind (server
down, timeout, 4xx reply) that the send task retries with backoff.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib

from bitloot.config import ConfigError, Settings
from bitloot.files import write_atomically

DEFAULT_SMTP_TIMEOUT = 30.0
_MAX_SERVER_TEXT = 120


class MailError(Exception):
    """Sending failed; the message is a short description with no secret in it."""

    retryable: bool = False


class RetryableMailError(MailError):
    """A transient failure (server unreachable, timeout, 4xx): trying later may succeed."""

    retryable = True


class MailTransport(Protocol):
    """Something that delivers a finished message or raises `MailError`."""

    async def send(self, msg: EmailMessage) -> None:
        """Deliver `msg` to its `To` recipients."""
        ...


class SmtpTransport:
    """Delivers over SMTP with aiosmtplib: implicit TLS (`smtps://`) or STARTTLS when offered.

    With credentials and a non-loopback host, STARTTLS is required rather than opportunistic:
    otherwise anyone on the path could strip the STARTTLS offer and read the password.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str | None = None,
        password: str | None = None,
        implicit_tls: bool = False,
        timeout: float = DEFAULT_SMTP_TIMEOUT,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self._password = password
        self.implicit_tls = implicit_tls
        self.timeout = timeout
        self._tls_context = tls_context
        # None: decide from the URL (a password is about to cross a network).
        self.requires_starttls = (
            require_starttls
            if require_starttls is not None
            else (not implicit_tls and username is not None and not _is_loopback(host))
        )

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout: float = DEFAULT_SMTP_TIMEOUT,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool | None = None,
    ) -> SmtpTransport:
        """Parse `smtp://user:pass@host:port` or `smtps://...`; the error never echoes the URL.

        Reserved characters in the user or password must be percent-encoded.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError("the scheme must be smtp:// or smtps://")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("the port is not a number between 0 and 65535") from None
        if not parts.hostname:
            raise ValueError("the URL names no host")
        implicit_tls = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=port or (465 if implicit_tls else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            implicit_tls=implicit_tls,
            timeout=timeout,
            tls_context=tls_context,
            require_starttls=require_starttls,
        )

    def __repr__(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        return f"SmtpTransport({scheme}://{self.host}:{self.port})"

    def _start_tls_mode(self) -> bool | None:
        # None lets aiosmtplib upgrade whenever the server offers STARTTLS (checked in
        # aiosmtplib 4.0, `SMTP._maybe_start_tls_on_connect`); True fails when it is not
        # offered; False because implicit TLS is already encrypted.
        if self.implicit_tls:
            return False
        return True if self.requires_starttls else None

    async def send(self, msg: EmailMessage) -> None:
        """Connect, upgrade, log in if configured, send, quit; failures become `MailError`."""
        try:
            await aiosmtplib.send(
                msg,
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=self._password,
                use_tls=self.implicit_tls,
                start_tls=self._start_tls_mode(),
                timeout=self.timeout,
                tls_context=self._tls_context,
            )
        except Exception as exc:
            raise self._mail_error(exc) from None

    def _mail_error(self, exc: Exception) -> MailError:
        # Built from known-safe parts only; `from None` above keeps aiosmtplib's own text
        # (host, port, server replies) out of the traceback too.
        error = classify_smtp_error(exc)
        if self._password:
            text = str(error).replace(self._password, "[redacted]")
            error = type(error)(text)
        return error


def classify_smtp_error(exc: BaseException) -> MailError:
    """Map an aiosmtplib/OS error to a retryable or permanent `MailError` with a safe text."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = sorted({r.code for r in exc.recipients})
        kind = RetryableMailError if all(400 <= c < 500 for c in codes) else MailError
        return kind(f"SMTP server refused the recipient ({', '.join(map(str, codes))})")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        kind = RetryableMailError if 400 <= exc.code < 500 else MailError
        what = _response_stage(exc)
        server_text = " ".join(exc.message.split())[:_MAX_SERVER_TEXT]
        return kind(f"SMTP server rejected {what} ({exc.code} {server_text})".rstrip())
    # aiosmtplib raises the bare base class only for capability problems (no STARTTLS, no
    # AUTH, TLS twice): configuration, which retrying will not fix.
    if isinstance(exc, aiosmtplib.SMTPNotSupported) or type(exc) is aiosmtplib.SMTPException:
        return MailError("SMTP server lacks a required extension (STARTTLS or AUTH)")
    if _is_certificate_error(exc):
        return MailError("SMTP server TLS certificate could not be verified")
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return RetryableMailError("SMTP server timed out")
    if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPServerDisconnected):
        return RetryableMailError(f"SMTP server unreachable ({_os_reason(exc)})")
    if isinstance(exc, aiosmtplib.SMTPException | OSError):
        return RetryableMailError(f"SMTP error ({type(exc).__name__})")
    return MailError(f"mail could not be sent ({type(exc).__name__})")


def _response_stage(exc: aiosmtplib.SMTPResponseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return "the login"
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return "the sender"
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return "the message"
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError):
        return "the connection"
    return "a command"


def _os_reason(exc: BaseException) -> str:
    cause = exc.__cause__
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return type(cause or exc).__name__


def _is_certificate_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__
    return False


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class MailDirTransport:
    """Writes each message to `<dir>/<timestamp>-<hash of Message-ID>.eml`, mode 0600.

    For development and the demo. The file appears whole or not at all (written to a
    temporary name, fsynced, renamed; the folder is created 0700), so a reader never sees
    half a message.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"MailDirTransport({str(self.path)!r})"

    async def send(self, msg: EmailMessage) -> None:
        """Write `msg` as an `.eml` file; an OS failure becomes a retryable `MailError`."""
        if msg["Message-ID"] is None:
            msg["Message-ID"] = make_msgid(domain="bitloot")
        try:
            await asyncio.to_thread(self._write, msg)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise RetryableMailError(f"could not write the mail file ({reason})") from None

    def file_name(self, msg: EmailMessage) -> str:
        """The name `msg` is stored under (time first, so `ls` sorts by arrival)."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        digest = hashlib.sha256(str(msg["Message-ID"]).encode()).hexdigest()[:16]
        return f"{stamp}-{digest}.eml"

    def _write(self, msg: EmailMessage) -> None:
        write_atomically(self.path / self.file_name(msg), msg.as_bytes(), mode=0o600)


def transport_from_settings(
    settings: Settings, *, tls_context: ssl.SSLContext | None = None
) -> MailTransport:
    """SMTP when `BITLOOT_SMTP_URL` is set, else `.eml` files in the effective mail dir."""
    if settings.smtp_url is None:
        return MailDirTransport(settings.effective_mail_dir)
    try:
        return SmtpTransport.from_url(settings.smtp_url.get_secret_value(), tls_context=tls_context)
    except ValueError as exc:
        raise ConfigError(f"BITLOOT_SMTP_URL: {exc}") from None
