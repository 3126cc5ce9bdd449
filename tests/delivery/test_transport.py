"""Mail transports against a real SMTP server (aiosmtpd) and a real directory."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import stat
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bitloot.config import ConfigError, Settings
from bitloot.mail import (
    MailDirTransport,
    MailError,
    RetryableMailError,
    SmtpTransport,
    transport_from_settings,
)
from bitloot.processes import free_port

PASSWORD = "hunter2-Sup3r-s3cret"


@dataclass
class Recorder:
    """An aiosmtpd handler that keeps every message it accepts."""

    messages: list[EmailMessage] = field(default_factory=list)
    tls_sessions: list[bool] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        self.tls_sessions.append(session.ssl is not None)
        return "250 OK"


@dataclass
class TlsFiles:
    server: ssl.SSLContext
    client: ssl.SSLContext


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1, and contexts that serve and trust it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (folder / "cert.pem").write_bytes(cert_pem)
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    client = ssl.create_default_context(cadata=cert_pem.decode())
    return TlsFiles(server=server, client=client)


def start_server(handler: Recorder, **kwargs: Any) -> tuple[Controller, int]:
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    return controller, port


@pytest.fixture
def plain_server() -> Iterator[tuple[Recorder, int]]:
    handler = Recorder()
    controller, port = start_server(handler)
    yield handler, port
    controller.stop()


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        b"mailer",
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def secure_server(tls: TlsFiles) -> Iterator[tuple[Recorder, int]]:
    """Offers STARTTLS, refuses mail before it, and wants a login (only over TLS)."""
    handler = Recorder()
    controller, port = start_server(
        handler,
        tls_context=tls.server,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=authenticator,
    )
    yield handler, port
    controller.stop()


def sample_message(message_id: str = "<delivery-1-x@bitloot>") -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = "Your BitLoot order is ready"
    msg["From"] = "keys@bitloot.invalid"
    msg["To"] = "buyer@example.com"
    msg["Message-ID"] = message_id
    msg.set_content("hello")
    return msg


async def test_smtp_delivers_to_the_server(plain_server: tuple[Recorder, int]) -> None:
    handler, port = plain_server
    await SmtpTransport.from_url(f"smtp://127.0.0.1:{port}").send(sample_message())
    assert len(handler.messages) == 1
    assert handler.messages[0]["Subject"] == "Your BitLoot order is ready"
    assert handler.messages[0]["Message-ID"] == "<delivery-1-x@bitloot>"


async def test_starttls_is_used_when_offered_and_login_works(
    secure_server: tuple[Recorder, int], tls: TlsFiles
) -> None:
    handler, port = secure_server
    transport = SmtpTransport.from_url(
        f"smtp://mailer:{PASSWORD}@127.0.0.1:{port}", tls_context=tls.client
    )
    await transport.send(sample_message())
    assert len(handler.messages) == 1
    assert handler.tls_sessions == [True]


async def test_implicit_tls_with_smtps(tls: TlsFiles) -> None:
    handler = Recorder()
    controller, port = start_server(handler, ssl_context=tls.server)
    try:
        transport = SmtpTransport.from_url(f"smtps://127.0.0.1:{port}", tls_context=tls.client)
        await transport.send(sample_message())
    finally:
        controller.stop()
    assert len(handler.messages) == 1


async def test_untrusted_certificate_is_a_permanent_error(
    secure_server: tuple[Recorder, int],
) -> None:
    _, port = secure_server
    with pytest.raises(MailError) as info:
        await SmtpTransport.from_url(f"smtp://mailer:{PASSWORD}@127.0.0.1:{port}").send(
            sample_message()
        )
    assert not info.value.retryable
    assert "certificate" in str(info.value)


async def test_wrong_password_is_permanent_and_never_echoed(
    secure_server: tuple[Recorder, int], tls: TlsFiles
) -> None:
    _, port = secure_server
    url = f"smtp://mailer:{PASSWORD}x@127.0.0.1:{port}"
    with pytest.raises(MailError) as info:
        await SmtpTransport.from_url(url, tls_context=tls.client).send(sample_message())
    assert not info.value.retryable
    assert "login" in str(info.value)
    _assert_no_secret(info.value, url)


async def test_smtp_down_is_retryable_and_hides_the_password() -> None:
    url = f"smtp://mailer:{PASSWORD}@127.0.0.1:{free_port()}"
    with pytest.raises(RetryableMailError) as info:
        await SmtpTransport.from_url(url, timeout=5).send(sample_message())
    assert info.value.retryable
    assert "unreachable" in str(info.value)
    _assert_no_secret(info.value, url)


def _assert_no_secret(exc: BaseException, url: str) -> None:
    rendered = "".join(traceback.format_exception(exc)) + repr(exc)
    assert PASSWORD not in rendered
    assert url not in rendered
    assert exc.__cause__ is None and exc.__suppress_context__


async def test_recipient_refused_with_5xx_is_permanent() -> None:
    class Refuser(Recorder):
        async def handle_RCPT(
            self, server: Any, session: Any, envelope: Any, address: str, options: Any
        ) -> str:
            return "550 5.1.1 no such user"

    controller, port = start_server(Refuser())
    try:
        with pytest.raises(MailError) as info:
            await SmtpTransport.from_url(f"smtp://127.0.0.1:{port}").send(sample_message())
    finally:
        controller.stop()
    assert not info.value.retryable
    assert "550" in str(info.value)


def test_from_url_parses_parts_and_defaults() -> None:
    plain = SmtpTransport.from_url("smtp://relay.internal")
    assert (plain.host, plain.port, plain.username, plain.implicit_tls) == (
        "relay.internal",
        25,
        None,
        False,
    )
    secure = SmtpTransport.from_url("smtps://u%40x:p%2Fw%40d@mail.example.com")
    assert (secure.host, secure.port, secure.username, secure.implicit_tls) == (
        "mail.example.com",
        465,
        "u@x",
        True,
    )
    assert "p/w@d" not in repr(secure)


def test_credentials_to_a_remote_host_require_starttls() -> None:
    assert SmtpTransport.from_url("smtp://u:p@mail.example.com:587").requires_starttls
    assert not SmtpTransport.from_url("smtp://mail.example.com:587").requires_starttls
    assert not SmtpTransport.from_url("smtp://u:p@127.0.0.1:2525").requires_starttls
    assert not SmtpTransport.from_url("smtps://u:p@mail.example.com").requires_starttls


def test_bad_url_error_does_not_echo_it() -> None:
    with pytest.raises(ValueError) as info:
        SmtpTransport.from_url(f"http://u:{PASSWORD}@host")
    assert PASSWORD not in str(info.value)
    with pytest.raises(ValueError) as info:
        SmtpTransport.from_url(f"smtp://u:{PASSWORD}@host:notaport")
    assert PASSWORD not in str(info.value)


def test_transport_from_settings(tmp_path: Path) -> None:
    maildir = transport_from_settings(Settings(data_dir=tmp_path))
    assert isinstance(maildir, MailDirTransport)
    assert maildir.path == tmp_path / "mail"
    smtp = transport_from_settings(
        Settings(data_dir=tmp_path, smtp_url=f"smtp://u:{PASSWORD}@mail.example.com:587")
    )
    assert isinstance(smtp, SmtpTransport)
    assert smtp.port == 587
    with pytest.raises(ConfigError) as info:
        transport_from_settings(Settings(data_dir=tmp_path, smtp_url=f"ftp://u:{PASSWORD}@h"))
    assert "BITLOOT_SMTP_URL" in str(info.value)
    assert PASSWORD not in str(info.value)


async def test_maildir_writes_a_private_parseable_eml(tmp_path: Path) -> None:
    folder = tmp_path / "nested" / "mail"
    await MailDirTransport(folder).send(sample_message())
    files = list(folder.iterdir())
    assert len(files) == 1
    (eml,) = files
    assert eml.suffix == ".eml"
    assert stat.S_IMODE(eml.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    parsed = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert parsed["Subject"] == "Your BitLoot order is ready"
    assert parsed["Message-ID"] == "<delivery-1-x@bitloot>"


async def test_maildir_names_files_by_time_and_message_id(tmp_path: Path) -> None:
    transport = MailDirTransport(tmp_path)
    await transport.send(sample_message("<a@bitloot>"))
    await transport.send(sample_message("<b@bitloot>"))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2
    assert all(not n.startswith(".") for n in names)  # no temporary file left behind
    assert names[0].split("-")[1] != names[1].split("-")[1]


async def test_maildir_failure_is_retryable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(RetryableMailError):
        await MailDirTransport(blocker / "mail").send(sample_message())


async def test_server_without_starttls_fails_permanently_when_tls_is_required() -> None:
    handler = Recorder()
    controller, port = start_server(handler)
    try:
        # As if the relay were across a network, where a password must not go in clear.
        transport = SmtpTransport.from_url(
            f"smtp://mailer:{PASSWORD}@127.0.0.1:{port}", require_starttls=True
        )
        with pytest.raises(MailError) as info:
            await transport.send(sample_message())
    finally:
        controller.stop()
    assert not info.value.retryable
    assert "STARTTLS" in str(info.value)
    assert handler.messages == []
