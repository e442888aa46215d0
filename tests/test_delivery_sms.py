"""SMS senders against a real HTTP server on loopback standing in for Twilio and a gateway."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from otpserver.delivery import (
    Templates,
    TwilioConfig,
    TwilioSmsSender,
    WebhookConfig,
    WebhookSmsSender,
    sign_webhook,
    verify_webhook_signature,
)
from otpserver.delivery.message import DeliveryError, OutgoingCode
from otpserver.otp.credentials import Credential

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "twilio-auth-token"
SECRET = "webhook-secret-with-at-least-32-characters"
TIMEOUT_SECONDS = 0.2
NOW = 1_700_000_000


@dataclass
class Reply:
    """What the loopback server does with one request: answer, drop, or hang."""

    status: int = 201
    body: dict[str, object] = field(default_factory=lambda: {"sid": "SM123"})
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    hang: bool = False


DROP = Reply(drop=True)
HANG = Reply(hang=True)


@dataclass
class Received:
    """One request as the server saw it."""

    path: str
    headers: dict[str, str]
    body: bytes


class Provider:
    """A threaded HTTP server on 127.0.0.1 that records requests and follows a script."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: deque[Reply] = deque()
        self.release = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # A short poll interval keeps shutdown (at each test's end) fast.
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                provider.received.append(Received(self.path, dict(self.headers.items()), body))
                reply = provider.script.popleft() if provider.script else Reply()
                if reply.hang:
                    # Held until the test ends; the client's timeout fires long before.
                    provider.release.wait(10)
                if reply.drop or reply.hang:
                    self.close_connection = True
                    return
                payload = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                for name, value in {"Content-Type": "application/json", **reply.headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                """Keep test output quiet."""

        return Handler

    def __enter__(self) -> Provider:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


@pytest.fixture
def provider() -> Iterator[Provider]:
    """A fresh loopback provider for one test."""
    with Provider() as running:
        yield running


@pytest.fixture(scope="module")
def templates() -> Templates:
    """The shipped templates, loaded once."""
    return Templates.load()


@pytest.fixture
async def closing() -> AsyncIterator[Callable[[TwilioSmsSender | WebhookSmsSender], None]]:
    """Registers senders whose HTTP clients are closed when the test ends."""
    senders: list[TwilioSmsSender | WebhookSmsSender] = []
    yield senders.append
    for sender in senders:
        await sender.aclose()


@pytest.fixture
def twilio(
    provider: Provider, templates: Templates, closing: Callable[[TwilioSmsSender], None]
) -> Callable[..., TwilioSmsSender]:
    """Builds Twilio senders pointed at the loopback provider."""

    def make(sender: str = "+14155550199", retries: int = 1) -> TwilioSmsSender:
        config = TwilioConfig(SID, TOKEN, sender, api_base=provider.url)
        built = TwilioSmsSender(config, templates, timeout_seconds=TIMEOUT_SECONDS, retries=retries)
        closing(built)
        return built

    return make


@pytest.fixture
def webhook(
    provider: Provider, templates: Templates, closing: Callable[[WebhookSmsSender], None]
) -> Callable[..., WebhookSmsSender]:
    """Builds webhook senders pointed at the loopback provider, with a fixed clock."""

    def make(retries: int = 1, url: str | None = None) -> WebhookSmsSender:
        config = WebhookConfig(url=url or f"{provider.url}/sms?tenant=7", secret=SECRET)
        built = WebhookSmsSender(
            config, templates, timeout_seconds=TIMEOUT_SECONDS, retries=retries, now=lambda: NOW
        )
        closing(built)
        return built

    return make


def outgoing(code: str = "123456", accept_language: str | None = None) -> OutgoingCode:
    """A text message for a US number, requested on example.com."""
    return OutgoingCode(
        Credential("phone", "+14155550100"),
        code,
        300,
        "example.com",
        accept_language=accept_language,
    )


def closed_port_url() -> str:
    """An http URL on loopback where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/sms"


async def test_twilio_request_shape(
    provider: Provider, twilio: Callable[..., TwilioSmsSender]
) -> None:
    """Twilio gets one form POST on the account's Messages URL with basic auth and the SMS."""
    await twilio().send(outgoing())
    (request,) = provider.received
    assert request.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    expected_auth = base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected_auth}"
    form = parse_qs(request.body.decode("ascii"), strict_parsing=True)
    assert form.keys() == {"To", "From", "Body"}
    assert form["To"] == ["+14155550100"]
    assert form["From"] == ["+14155550199"]
    body = form["Body"][0]
    assert body.startswith("123456 is your verification code for example.com.")
    assert body.splitlines()[-1] == "@example.com #123456"


async def test_twilio_messaging_service(
    provider: Provider, twilio: Callable[..., TwilioSmsSender]
) -> None:
    """A messaging service SID is sent as MessagingServiceSid instead of From."""
    service = "MG" + "a" * 32
    await twilio(sender=service).send(outgoing())
    form = parse_qs(provider.received[0].body.decode("ascii"))
    assert form["MessagingServiceSid"] == [service]
    assert "From" not in form


async def test_twilio_localized_body(
    provider: Provider, twilio: Callable[..., TwilioSmsSender]
) -> None:
    """The SMS body follows Accept-Language and survives form encoding intact."""
    await twilio().send(outgoing(accept_language="es-MX,es;q=0.9"))
    body = parse_qs(provider.received[0].body.decode("ascii"))["Body"][0]
    assert "código" in body
    assert body.endswith("@example.com #123456")


async def test_twilio_client_error_is_not_retried(
    provider: Provider,
    twilio: Callable[..., TwilioSmsSender],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 4xx fails at once with Twilio's error code; the log has its message but never the code."""
    echo = "The 'To' number is not valid; body was 123456"
    provider.script.append(Reply(400, {"code": 21211, "message": echo, "status": 400}))
    with caplog.at_level(logging.WARNING), pytest.raises(DeliveryError) as caught:
        await twilio(retries=3).send(outgoing())
    assert len(provider.received) == 1
    assert "HTTP 400" in str(caught.value)
    assert "21211" in str(caught.value)
    assert "The 'To' number is not valid" in caplog.text
    assert "123456" not in str(caught.value) + caplog.text


async def test_twilio_server_error_is_a_delivery_error(
    provider: Provider, twilio: Callable[..., TwilioSmsSender]
) -> None:
    """A 5xx, even without a JSON body, fails once and is not retried."""
    provider.script.append(Reply(503, {}))
    with pytest.raises(DeliveryError, match="HTTP 503, error unknown"):
        await twilio(retries=2).send(outgoing())
    assert len(provider.received) == 1


async def test_twilio_retries_a_dropped_connection(
    provider: Provider, twilio: Callable[..., TwilioSmsSender]
) -> None:
    """A connection closed without an answer is retried, and the retry can succeed."""
    provider.script.append(DROP)
    await twilio(retries=1).send(outgoing())
    assert len(provider.received) == 2
    assert provider.received[0].body == provider.received[1].body


async def test_twilio_retries_are_bounded(
    provider: Provider, twilio: Callable[..., TwilioSmsSender]
) -> None:
    """After `retries` extra attempts the network error becomes a `DeliveryError`."""
    provider.script.extend([DROP] * 5)
    with pytest.raises(DeliveryError, match="could not be reached"):
        await twilio(retries=2).send(outgoing())
    assert len(provider.received) == 3


async def test_twilio_timeout(provider: Provider, twilio: Callable[..., TwilioSmsSender]) -> None:
    """A provider that never answers fails after the timeout on each of the bounded attempts."""
    provider.script.extend([HANG, HANG])
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="ReadTimeout"):
        await twilio(retries=1).send(outgoing())
    elapsed = time.monotonic() - started
    assert len(provider.received) == 2
    assert 2 * TIMEOUT_SECONDS <= elapsed < 2


async def test_twilio_unreachable(templates: Templates) -> None:
    """Nothing listening on the port is a `DeliveryError`, after the bounded retries."""
    config = TwilioConfig(SID, TOKEN, "+14155550199", api_base=closed_port_url())
    sender = TwilioSmsSender(config, templates, timeout_seconds=TIMEOUT_SECONDS, retries=1)
    try:
        with pytest.raises(DeliveryError, match="ConnectError"):
            await sender.send(outgoing())
    finally:
        await sender.aclose()


async def test_webhook_request_shape_and_signature(
    provider: Provider, webhook: Callable[..., WebhookSmsSender]
) -> None:
    """The gateway gets the documented JSON and headers, and the signature verifies."""
    await webhook().send(outgoing(accept_language="fr-FR, fr;q=0.9"))
    (request,) = provider.received
    assert request.path == "/sms?tenant=7"
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    payload = json.loads(request.body)
    assert payload.keys() == {"to", "text", "code", "channel", "locale", "ttlSeconds"}
    assert payload["to"] == "+14155550100"
    assert payload["code"] == "123456"
    assert payload["channel"] == "phone"
    assert payload["locale"] == "fr"
    assert payload["ttlSeconds"] == 300
    assert "vérification" in payload["text"]
    assert payload["text"].splitlines()[-1] == "@example.com #123456"
    timestamp = request.headers["X-Otp-Timestamp"]
    signature = request.headers["X-Otp-Signature"]
    assert timestamp == str(NOW)
    assert signature.startswith("v1=")
    assert verify_webhook_signature(SECRET, timestamp, request.body, signature, now=NOW + 10)


async def test_webhook_errors_are_not_retried(
    provider: Provider, webhook: Callable[..., WebhookSmsSender]
) -> None:
    """Any non-2xx answer (4xx, 5xx, or a redirect) fails once and is never followed or retried."""
    provider.script.extend(
        [Reply(401, {}), Reply(500, {}), Reply(302, {}, headers={"Location": "/elsewhere"})]
    )
    sender = webhook(retries=3)
    for status in (401, 500, 302):
        with pytest.raises(DeliveryError, match=f"HTTP {status}") as caught:
            await sender.send(outgoing())
        assert "123456" not in str(caught.value)
    assert [r.path for r in provider.received] == ["/sms?tenant=7"] * 3


async def test_webhook_retry_repeats_the_identical_request(
    provider: Provider, webhook: Callable[..., WebhookSmsSender]
) -> None:
    """A retried webhook repeats body, timestamp and signature, so it can be deduplicated."""
    provider.script.append(DROP)
    await webhook(retries=1).send(outgoing())
    first, second = provider.received
    assert first.body == second.body
    for header in ("X-Otp-Timestamp", "X-Otp-Signature"):
        assert first.headers[header] == second.headers[header]


async def test_webhook_timeout_and_retry_count(
    provider: Provider, webhook: Callable[..., WebhookSmsSender]
) -> None:
    """A hanging gateway is given up on after the timeout, once per allowed attempt."""
    provider.script.extend([HANG, HANG, HANG])
    with pytest.raises(DeliveryError, match="ReadTimeout"):
        await webhook(retries=2).send(outgoing())
    assert len(provider.received) == 3


async def test_webhook_unreachable(webhook: Callable[..., WebhookSmsSender]) -> None:
    """A gateway that refuses connections is a `DeliveryError` naming the network error."""
    with pytest.raises(DeliveryError, match="ConnectError"):
        await webhook(retries=0, url=closed_port_url()).send(outgoing())


BODY = b'{"to":"+14155550100","code":"123456"}'
TIMESTAMP = str(NOW)
SIGNATURE = sign_webhook(SECRET, TIMESTAMP, BODY)


@pytest.mark.parametrize(
    ("secret", "timestamp", "body", "signature", "now", "valid"),
    [
        (SECRET, TIMESTAMP, BODY, SIGNATURE, NOW, True),
        (SECRET.encode(), TIMESTAMP, BODY, SIGNATURE, NOW + 300, True),
        (SECRET, TIMESTAMP, BODY, f" {SIGNATURE} ", NOW - 300, True),
        (SECRET, TIMESTAMP, BODY, SIGNATURE, NOW + 301, False),
        (SECRET, TIMESTAMP, BODY, SIGNATURE, NOW - 301, False),
        ("another-secret-of-thirty-two-characters", TIMESTAMP, BODY, SIGNATURE, NOW, False),
        (SECRET, TIMESTAMP, BODY.replace(b"123456", b"654321"), SIGNATURE, NOW, False),
        (SECRET, str(NOW + 1), BODY, SIGNATURE, NOW, False),
        (SECRET, TIMESTAMP, BODY, SIGNATURE.removeprefix("v1="), NOW, False),
        (SECRET, TIMESTAMP, BODY, SIGNATURE.replace("v1=", "v2="), NOW, False),
        (SECRET, TIMESTAMP, BODY, SIGNATURE.upper(), NOW, False),
        (SECRET, TIMESTAMP, BODY, "v1=é", NOW, False),
        (SECRET, "", BODY, SIGNATURE, NOW, False),
        (SECRET, f"{NOW}.5", BODY, SIGNATURE, NOW, False),
        (SECRET, "-1", BODY, SIGNATURE, NOW, False),
        (SECRET, "9" * 40, BODY, SIGNATURE, NOW, False),
    ],
)
def test_verify_webhook_signature(
    secret: str | bytes, timestamp: str, body: bytes, signature: str, now: float, valid: bool
) -> None:
    """Only the right secret, body and timestamp within tolerance verify; anything else is False."""
    assert verify_webhook_signature(secret, timestamp, body, signature, now) is valid


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    """The documented construction holds, so a gateway in any language can verify it."""
    expected = hmac.new(SECRET.encode(), f"{TIMESTAMP}.".encode() + BODY, hashlib.sha256)
    assert f"v1={expected.hexdigest()}" == SIGNATURE
