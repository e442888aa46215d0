"""The SMTP sender against a real aiosmtpd server on loopback, raw message bytes included."""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import ipaddress
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from otpserver.delivery import SmtpConfig, SmtpSender, Templates
from otpserver.delivery.message import DeliveryError, OutgoingCode
from otpserver.otp.credentials import Credential

CODE = "123456"
TO = "user@example.com"
FROM = "no-reply@example.com"
TIMEOUT_SECONDS = 2.0
EXPECTED_HEADERS = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Auto-Submitted",
    "MIME-Version",
    "Content-Type",
]


@dataclass
class Captured:
    """What the server accepted: the envelopes and whether each came over TLS."""

    envelopes: list[Envelope] = field(default_factory=list)
    tls: list[bool] = field(default_factory=list)
    data_reply: str = "250 Message accepted for delivery"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Keep the message and whether it came over TLS."""
        self.envelopes.append(envelope)
        assert server.transport is not None
        self.tls.append(server.transport.get_extra_info("ssl_object") is not None)
        return self.data_reply

    def raw(self) -> bytes:
        """The only message received, exactly as sent."""
        (envelope,) = self.envelopes
        assert isinstance(envelope.original_content, bytes)
        return envelope.original_content

    def parsed(self) -> EmailMessage:
        """The only message received, parsed."""
        (message,) = self.messages()
        return message

    def messages(self) -> list[EmailMessage]:
        """Every message received, parsed, in order."""
        messages = []
        for envelope in self.envelopes:
            assert isinstance(envelope.original_content, bytes)
            message = email.message_from_bytes(
                envelope.original_content, policy=email.policy.default
            )
            assert isinstance(message, EmailMessage)
            messages.append(message)
        return messages


@dataclass(frozen=True)
class Certificates:
    """A throw-away CA and a server certificate for 127.0.0.1 and localhost."""

    ca_pem: str
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        """What the test server presents."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context trusting only the throw-away CA."""
        return ssl.create_default_context(cadata=self.ca_pem)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A CA and a loopback server certificate made fresh for this module."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "otpserver test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "server.pem", folder / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    return Certificates(ca_pem, cert_file, key_file)


StartServer = Callable[..., Awaitable[tuple[int, Captured]]]


@pytest.fixture
async def smtp_server() -> AsyncIterator[StartServer]:
    """Starts aiosmtpd servers on 127.0.0.1 (free ports) in the test's loop; stops them after."""
    servers: list[asyncio.AbstractServer] = []

    async def start(
        *, implicit_tls: ssl.SSLContext | None = None, **smtp_options: Any
    ) -> tuple[int, Captured]:
        captured = Captured()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(captured, hostname="localhost", **smtp_options),
            "127.0.0.1",
            0,
            ssl=implicit_tls,
        )
        servers.append(server)
        return server.sockets[0].getsockname()[1], captured

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.fixture(scope="module")
def templates() -> Templates:
    """The shipped templates, loaded once."""
    return Templates.load()


def config(port: int, **changes: Any) -> SmtpConfig:
    """A plain-text SMTP configuration for the loopback server on `port`."""
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "from_address": FROM,
        "from_name": "Example Sign-in",
        "security": "none",
        "timeout_seconds": TIMEOUT_SECONDS,
        **changes,
    }
    return SmtpConfig(**options)


def outgoing(
    *, to: str = TO, code: str = CODE, locale: str | None = None, origin_host: str = "example.com"
) -> OutgoingCode:
    """An email message for `to`."""
    return OutgoingCode(Credential("email", to), code, 300, origin_host, locale=locale)


def body_of(message: EmailMessage, subtype: str) -> str:
    """The decoded text of the `text/<subtype>` part."""
    part = message.get_body(preferencelist=(subtype,))
    assert isinstance(part, EmailMessage)
    content = part.get_content()
    assert isinstance(content, str)
    return content


async def test_message_structure(smtp_server: StartServer, templates: Templates) -> None:
    """The raw message has exactly the expected headers, two 7-bit bodies and the code alone."""
    port, captured = await smtp_server()
    await SmtpSender(config(port), templates).send(outgoing())
    (envelope,) = captured.envelopes
    assert envelope.mail_from == FROM
    assert envelope.rcpt_tos == [TO]
    raw = captured.raw()
    assert raw.isascii()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"")
    message = captured.parsed()
    assert list(message.keys()) == EXPECTED_HEADERS
    assert message["From"] == f"Example Sign-in <{FROM}>"
    assert message["To"] == TO
    assert message["Subject"] == f"{CODE} is your verification code"
    assert message["Auto-Submitted"] == "auto-generated"
    sent_at = parsedate_to_datetime(message["Date"]).timestamp()
    assert abs(sent_at - time.time()) < 60
    assert message["Message-ID"].endswith("@example.com>")
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    for part in parts:
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
    text, html = body_of(message, "plain"), body_of(message, "html")
    assert CODE in text.splitlines()
    assert f">{CODE}</p>" in html
    assert "Do not share this code with anyone." in text


async def test_only_the_address_and_code_come_from_the_request(
    smtp_server: StartServer, templates: Templates
) -> None:
    """Two messages differing only in address and code differ only where those appear."""
    port, captured = await smtp_server()
    sender = SmtpSender(config(port), templates)
    await sender.send(outgoing())
    await sender.send(outgoing(to="other@example.org", code="987654"))
    first, second = captured.messages()
    for name in ("From", "Auto-Submitted", "MIME-Version"):
        assert first[name] == second[name]
    assert first["Subject"].replace(CODE, "987654") == second["Subject"]
    for subtype in ("plain", "html"):
        assert body_of(first, subtype).replace(CODE, "987654") == body_of(second, subtype)


@pytest.mark.parametrize(
    ("language", "subject"),
    [
        ("es", "123456 es tu código de verificación"),
        ("fr", "123456 est votre code de vérification"),
        ("de", "123456 ist Ihr Bestätigungscode"),
    ],
)
async def test_localized_message_encoding(
    smtp_server: StartServer, templates: Templates, language: str, subject: str
) -> None:
    """Non-ASCII translations travel as RFC 2047 and quoted-printable and decode intact."""
    port, captured = await smtp_server()
    message_in = outgoing(locale=language)
    await SmtpSender(config(port), templates).send(message_in)
    raw = captured.raw()
    assert raw.isascii()
    assert b"=?utf-8?" in raw.split(b"\r\n\r\n")[0]
    message = captured.parsed()
    assert message["Subject"] == subject
    rendered = templates.email(message_in)
    # On the wire lines end in CRLF; the parser keeps that, the templates use LF.
    assert body_of(message, "plain").replace("\r\n", "\n") == rendered.text
    assert body_of(message, "html").replace("\r\n", "\n") == rendered.html
    assert f'lang="{language}"' in body_of(message, "html")


@pytest.mark.parametrize(
    ("message_changes", "config_changes"),
    [
        ({"to": "user@example.com\r\nBcc: spy@evil.example"}, {}),
        ({"to": "user@example.com\nBcc: spy@evil.example"}, {}),
        ({"to": "user@example.com\rBcc: spy@evil.example"}, {}),
        ({"to": "user@example.com\x00"}, {}),
        ({"code": "123456\r\nBcc: spy@evil.example"}, {}),
        ({"code": "12\x003456"}, {}),
        ({"origin_host": "example.com\r\nBcc: spy@evil.example"}, {}),
        ({}, {"from_name": "Example\r\nBcc: spy@evil.example"}),
        ({}, {"from_address": "no-reply@example.com\r\nBcc: spy@evil.example"}),
        ({"to": "not an address"}, {}),
    ],
)
async def test_header_injection_is_refused(
    smtp_server: StartServer,
    templates: Templates,
    message_changes: dict[str, str],
    config_changes: dict[str, str],
) -> None:
    """A line break or NUL in any header value refuses the send; nothing reaches the server."""
    port, captured = await smtp_server()
    sender = SmtpSender(config(port, **config_changes), templates)
    with pytest.raises(DeliveryError) as caught:
        await sender.send(outgoing(**message_changes))
    assert captured.envelopes == []
    assert CODE not in str(caught.value)


async def test_internationalized_domain_is_sent_as_idna(
    smtp_server: StartServer, templates: Templates
) -> None:
    """An address on a non-ASCII domain goes out in IDNA form, so any server accepts it."""
    port, captured = await smtp_server()
    await SmtpSender(config(port), templates).send(outgoing(to="user@bücher.de"))
    (envelope,) = captured.envelopes
    assert envelope.rcpt_tos == ["user@xn--bcher-kva.de"]
    assert captured.raw().isascii()
    assert captured.parsed()["To"] == "user@xn--bcher-kva.de"


async def test_non_ascii_local_part_uses_smtputf8(
    smtp_server: StartServer, templates: Templates
) -> None:
    """A non-ASCII mailbox name is sent with SMTPUTF8 to a server that offers it."""
    port, captured = await smtp_server(enable_SMTPUTF8=True)
    await SmtpSender(config(port), templates).send(outgoing(to="josé@example.com"))
    (envelope,) = captured.envelopes
    assert envelope.smtp_utf8
    assert envelope.rcpt_tos == ["josé@example.com"]
    assert captured.parsed()["To"] == "josé@example.com"


async def test_non_ascii_local_part_without_smtputf8_fails(
    smtp_server: StartServer, templates: Templates
) -> None:
    """A server without SMTPUTF8 cannot take a non-ASCII mailbox name: a clean `DeliveryError`."""
    port, captured = await smtp_server()
    with pytest.raises(DeliveryError, match="SMTPUTF8 is not supported"):
        await SmtpSender(config(port), templates).send(outgoing(to="josé@example.com"))
    assert captured.envelopes == []


async def test_starttls_with_trusted_certificate(
    smtp_server: StartServer, templates: Templates, certificates: Certificates
) -> None:
    """With STARTTLS the message travels encrypted after the certificate is verified."""
    port, captured = await smtp_server(tls_context=certificates.server_context())
    sender = SmtpSender(
        config(port, security="starttls"), templates, tls_context=certificates.client_context()
    )
    await sender.send(outgoing())
    assert captured.tls == [True]


async def test_starttls_is_never_downgraded(
    smtp_server: StartServer, templates: Templates, certificates: Certificates
) -> None:
    """A server that does not offer STARTTLS gets nothing, rather than the code in clear."""
    port, captured = await smtp_server()
    sender = SmtpSender(
        config(port, security="starttls"), templates, tls_context=certificates.client_context()
    )
    with pytest.raises(DeliveryError, match="STARTTLS extension not supported"):
        await sender.send(outgoing())
    assert captured.envelopes == []


async def test_untrusted_certificate_is_refused(
    smtp_server: StartServer, templates: Templates, certificates: Certificates
) -> None:
    """The system's trust store does not know the test CA, so the handshake fails."""
    port, captured = await smtp_server(tls_context=certificates.server_context())
    with pytest.raises(DeliveryError) as caught:
        await SmtpSender(config(port, security="starttls"), templates).send(outgoing())
    assert captured.envelopes == []
    assert CODE not in str(caught.value)


async def test_implicit_tls(
    smtp_server: StartServer, templates: Templates, certificates: Certificates
) -> None:
    """With `tls` the connection is encrypted from the first byte."""
    port, captured = await smtp_server(implicit_tls=certificates.server_context())
    sender = SmtpSender(
        config(port, security="tls"), templates, tls_context=certificates.client_context()
    )
    await sender.send(outgoing())
    assert captured.tls == [True]
    assert captured.parsed()["To"] == TO


def authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    """An aiosmtpd authenticator accepting only the login mailer / right-password."""
    assert isinstance(data, LoginPassword)
    ok = (data.login, data.password) == (b"mailer", b"right-password")
    # handled=False: aiosmtpd then sends the 535 refusal itself.
    return AuthResult(success=ok, handled=False)


@pytest.mark.parametrize(("password", "delivered"), [("right-password", 1), ("wrong", 0)])
async def test_authentication(
    smtp_server: StartServer,
    templates: Templates,
    certificates: Certificates,
    password: str,
    delivered: int,
) -> None:
    """The sender logs in over STARTTLS; a refused login is a `DeliveryError` and sends nothing."""
    port, captured = await smtp_server(
        tls_context=certificates.server_context(), auth_required=True, authenticator=authenticate
    )
    sender = SmtpSender(
        config(port, security="starttls", username="mailer", password=password),
        templates,
        tls_context=certificates.client_context(),
    )
    if delivered:
        await sender.send(outgoing())
    else:
        with pytest.raises(DeliveryError, match="SMTPAuthenticationError") as caught:
            await sender.send(outgoing())
        assert CODE not in str(caught.value)
    assert len(captured.envelopes) == delivered


async def test_timeout_is_a_delivery_error(templates: Templates) -> None:
    """A server that accepts the connection but never greets fails after the timeout."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        sender = SmtpSender(config(port, timeout_seconds=0.2), templates)
        started = time.monotonic()
        with pytest.raises(DeliveryError, match="Timeout") as caught:
            await sender.send(outgoing())
        assert time.monotonic() - started < 2
    assert CODE not in str(caught.value)


async def test_connection_refused_is_a_delivery_error(templates: Templates) -> None:
    """Nothing listening on the port is a `DeliveryError`."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DeliveryError, match="SMTP delivery failed"):
        await SmtpSender(config(port), templates).send(outgoing())


async def test_server_reply_is_reported_without_the_code(
    smtp_server: StartServer, templates: Templates
) -> None:
    """A refusal keeps the server's reply for the log but never the code, even if echoed."""
    port, captured = await smtp_server()
    captured.data_reply = f"554 5.7.1 Message {CODE} rejected as spam"
    with pytest.raises(DeliveryError) as caught:
        await SmtpSender(config(port), templates).send(outgoing())
    message = str(caught.value)
    assert "554" in message
    assert "rejected as spam" in message
    assert "[code]" in message
    assert CODE not in message


@dataclass
class Stalling(Captured):
    """A server that holds a step for `stall_seconds` before answering it, as a slow relay
    does; RCPT is held when `stall_rcpt`, else the reply to DATA, after the message was
    kept (a relay that queued it and will deliver it, whether or not the client waits)."""

    stall_seconds: float = 60.0
    stall_rcpt: bool = False

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        """Hold the recipient, if told to, then take it."""
        if self.stall_rcpt:
            await asyncio.sleep(self.stall_seconds)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Keep the message, then hold the reply."""
        reply = await super().handle_DATA(server, session, envelope)
        if not self.stall_rcpt:
            await asyncio.sleep(self.stall_seconds)
        return reply


async def start_stalling(stalling: Stalling) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: SMTP(stalling, hostname="localhost"), "127.0.0.1", 0)


async def test_the_deadline_bounds_the_whole_exchange_including_the_goodbye(
    templates: Templates,
) -> None:
    """A relay that stalls before the message gives up at the deadline, not twice it: the
    connection is dropped instead of waiting again for a polite QUIT."""
    stalling = Stalling(stall_rcpt=True)
    server = await start_stalling(stalling)
    try:
        port = server.sockets[0].getsockname()[1]
        sender = SmtpSender(config(port, timeout_seconds=1.0), templates)
        started = time.monotonic()
        with pytest.raises(DeliveryError, match="Timeout"):
            await sender.send(outgoing())
        # A bound on a deadline, not a measurement: the fault was a second full timeout.
        assert time.monotonic() - started < 1.6
    finally:
        server.close()
    assert stalling.envelopes == []


async def test_a_message_the_relay_may_still_accept_keeps_its_code(templates: Templates) -> None:
    """Once the message itself was handed over, a late relay does not fail the send: the
    mail may still arrive, and the code in it must then work, so it is not rolled back."""
    stalling = Stalling(stall_seconds=1.0)
    server = await start_stalling(stalling)
    try:
        port = server.sockets[0].getsockname()[1]
        await SmtpSender(config(port, timeout_seconds=0.3), templates).send(outgoing())
    finally:
        server.close()
    assert CODE in body_of(stalling.parsed(), "plain")


ENCODED_WORD_LOCAL_PARTS = [
    "=?utf-8?q?=0d=0abcc=3a_spy=40evil=2eexample?=",
    "=?UTF-8?Q?x=0D=0ASubject=3A_win?=",
    "=?utf-8?b?DQpCY2M6IHNweUBldmlsLmV4YW1wbGU=?=",
    "a=?iso-8859-1?q?=0a?=b",
]


@pytest.mark.parametrize("local_part", ENCODED_WORD_LOCAL_PARTS)
async def test_an_encoded_word_in_the_address_never_reaches_the_relay(
    smtp_server: StartServer, templates: Templates, local_part: str
) -> None:
    """An RFC 2047 encoded word in the local part, which some Python builds decode into a
    raw line break (CVE-2024-6923), is refused before anything is sent, whatever the
    interpreter's patch level; the relay receives nothing."""
    port, captured = await smtp_server()
    with pytest.raises(DeliveryError):
        await SmtpSender(config(port), templates).send(outgoing(to=f"{local_part}@example.com"))
    assert captured.envelopes == []


async def test_the_raw_message_has_only_the_servers_own_header_lines(
    smtp_server: StartServer, templates: Templates
) -> None:
    """On the wire, the message's header lines are exactly the server's own, each once, and
    the recipient appears only in `To`."""
    port, captured = await smtp_server()
    await SmtpSender(config(port), templates).send(outgoing(to="ada.lovelace+otp@example.com"))
    head = captured.raw().split(b"\r\n\r\n", 1)[0].decode("ascii")
    names = [line.split(":", 1)[0] for line in head.split("\r\n") if not line[:1].isspace()]
    assert names == EXPECTED_HEADERS
    assert [line for line in head.split("\r\n") if "ada.lovelace" in line] == [
        "To: ada.lovelace+otp@example.com"
    ]
