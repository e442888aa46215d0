"""Audit events: pseudonymous credentials, refused secrets, and the signed webhook."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from otpserver.errors import ConfigError
from otpserver.http.app import OtpApp
from otpserver.observability import audit
from otpserver.observability.audit import AuditTrail, mask
from otpserver.observability.webhooks import WebhookSender
from otpserver.otp.credentials import Credential
from otpserver.settings.operations import OperationsConfig, parse_webhook_secret
from tests.conftest import AppFactory
from tests.support.api import Browser, wrong
from tests.support.fakes import RecordingSender
from tests.support.hygiene import assert_no_leaks, captured_records

SIGNING_KEY = bytes(range(100, 132))
SECRET = "whsec_" + base64.b64encode(SIGNING_KEY).decode()
ADA = Credential("email", "ada@example.com")


def verify_standard_webhook(secret: str, headers: dict[str, str], body: bytes) -> dict[str, object]:
    """The receiving side of Standard Webhooks, written from the specification: the key is
    the base64 after `whsec_`; the signed content is `id.timestamp.body`; the header holds
    space-separated `v1,<base64 HMAC-SHA256>` entries, one of which must match in constant
    time; a timestamp more than five minutes away is refused."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    message_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > 300:
        raise ValueError("timestamp too far from now")
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for entry in headers["webhook-signature"].split(" "):
        version, _, signature = entry.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            document: dict[str, object] = json.loads(body)
            return document
    raise ValueError("no matching signature")


@dataclass
class Receiver:
    """A webhook receiver on loopback: answers each request with the next scripted status."""

    url: str
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"{len(self.requests)} request(s) arrived, not {count}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A local Standard Webhooks receiver that records headers and bodies."""
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            status = state.statuses.pop(0) if state.statuses else 204
            # Recorded before answering: the sender waits for the answer before its next
            # request, so the record keeps the order the events were sent in.
            with state.arrived:
                state.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                state.arrived.notify_all()
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the tests read what arrived."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/events?token=hook-token-123"
    yield state
    server.shutdown()
    server.server_close()


def test_masks_show_little_and_the_hmac_joins_equal_credentials() -> None:
    """Masks keep a first character and the domain (or a phone's ends); the HMAC is equal for
    equal credentials, differs across channels and keys, and holds no part of the address."""
    assert mask("ada@example.com") == "a***@example.com"
    assert mask("+447700900123") == "+4***23"
    assert mask("x") == "x***"
    trail = AuditTrail(b"k" * 32)
    assert trail.credential_hmac(ADA) == trail.credential_hmac(Credential("email", ADA.address))
    assert trail.credential_hmac(ADA) != trail.credential_hmac(Credential("phone", ADA.address))
    assert trail.credential_hmac(ADA) != AuditTrail(b"j" * 32).credential_hmac(ADA)
    assert "ada" not in trail.credential_hmac(ADA)
    # The pseudonym is HMAC-SHA256 of "channel:address", cut to 16 bytes, unpadded base64url:
    # pinned, so events written by earlier versions still join with new ones.
    expected = hmac.new(b"k" * 32, b"email:" + ADA.address.encode(), hashlib.sha256).digest()
    assert trail.credential_hmac(ADA) == base64.urlsafe_b64encode(expected[:16]).decode()[:22]


def test_unknown_types_and_secret_fields_are_refused() -> None:
    """An event type outside §16's list, or a field named like a secret, is a ValueError."""
    trail = AuditTrail(b"k" * 32)
    with pytest.raises(ValueError, match="unknown"):
        trail.emit("otp.whatever")
    for name in ("code", "token", "cookie", "secret", "key", "address"):
        with pytest.raises(ValueError, match="never carry"):
            trail.emit("otp.sent", credential=ADA, **{name: "x"})


def test_an_event_is_one_logged_object_without_the_credential() -> None:
    """The log gets one record whose event has type, id, timestamp and data with the
    channel, HMAC and mask, and never the address."""
    trail = AuditTrail(b"k" * 32)
    with captured_records() as records:
        logger = logging.getLogger("otpserver.audit")
        seen: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = seen.append  # type: ignore[method-assign,assignment]
        logger.addHandler(handler)
        try:
            trail.emit("otp.verified", credential=ADA, method="code")
        finally:
            logger.removeHandler(handler)
    assert len(seen) == 1
    event = seen[0].__dict__["event"]
    assert event["type"] == "otp.verified"
    assert event["id"].startswith("msg_")
    assert event["data"] == {
        "method": "code",
        "channel": "email",
        "credential_hmac": trail.credential_hmac(ADA),
        "credential_masked": "a***@example.com",
    }
    assert "ada@example.com" not in json.dumps(event)
    assert_no_leaks(records.text, ["ada@example.com"])


def test_webhook_secrets_follow_the_standard_format() -> None:
    """`whsec_` + base64 of 24+ bytes is the key; anything else names the variable."""
    assert parse_webhook_secret(SECRET) == SIGNING_KEY
    for bad in (
        "",
        "whsec_",
        "whsec_not base64!",
        "whsec_" + base64.b64encode(b"short").decode(),
        base64.b64encode(SIGNING_KEY).decode(),
    ):
        with pytest.raises(ConfigError, match="OTP_EVENTS_WEBHOOK_SECRET"):
            parse_webhook_secret(bad)
    with pytest.raises(ConfigError, match="OTP_EVENTS_WEBHOOK_SECRET is required"):
        OperationsConfig.from_env({"OTP_EVENTS_WEBHOOK_URL": "https://hooks.example.com/x"})


def test_webhook_events_arrive_signed_and_verify(receiver: Receiver) -> None:
    """Each event is one POST whose Standard Webhooks signature verifies, whose id matches
    the event's, and whose body is the event."""
    trail = AuditTrail(b"k" * 32, WebhookSender(receiver.url, SIGNING_KEY))
    trail.emit("otp.sent", credential=ADA, resend=False)
    trail.emit("key.rotated", key_number=7)
    receiver.wait_for(2)
    trail.close()
    types: list[str] = []
    for headers, body in receiver.requests:
        event = verify_standard_webhook(SECRET, headers, body)
        assert headers["webhook-id"] == event["id"]
        assert headers["content-type"] == "application/json"
        types.append(str(event["type"]))
    assert sorted(types) == ["key.rotated", "otp.sent"]


def test_a_tampered_or_foreign_event_does_not_verify(receiver: Receiver) -> None:
    """The test's verifier refuses a changed body and another key, so its passes mean
    something."""
    trail = AuditTrail(b"k" * 32, WebhookSender(receiver.url, SIGNING_KEY))
    trail.emit("otp.sent", credential=ADA, resend=False)
    receiver.wait_for(1)
    trail.close()
    headers, body = receiver.requests[0]
    with pytest.raises(ValueError, match="signature"):
        verify_standard_webhook(SECRET, headers, body.replace(b"otp.sent", b"otp.verified"))
    other = "whsec_" + base64.b64encode(bytes(32)).decode()
    with pytest.raises(ValueError, match="signature"):
        verify_standard_webhook(other, headers, body)


def test_failed_deliveries_are_retried_a_bounded_number_of_times(receiver: Receiver) -> None:
    """Two 500s then a 204: the third attempt delivers, same id, freshly signed; an event
    refused every time is tried exactly `attempts` times and then given up, with a warning
    that names neither the URL's token nor the secret."""
    receiver.statuses = [500, 503]
    sender = WebhookSender(receiver.url, SIGNING_KEY, attempts=3, backoff_seconds=0.01)
    trail = AuditTrail(b"k" * 32, sender)
    trail.emit("otp.sent", credential=ADA, resend=False)
    receiver.wait_for(3)
    ids = {headers["webhook-id"] for headers, _ in receiver.requests}
    assert len(ids) == 1
    for headers, body in receiver.requests:
        verify_standard_webhook(SECRET, headers, body)

    receiver.statuses = [500, 500, 500, 500]
    with captured_records() as records:
        trail.emit("otp.failed", credential=ADA, method="code", outcome="incorrect")
        receiver.wait_for(6)
        trail.close()
    assert len(receiver.requests) == 6
    assert "did not take event" in records.text
    assert_no_leaks(records.text, ["hook-token-123", SECRET])


def test_a_full_queue_drops_events_without_waiting() -> None:
    """With a receiver that never answers, a queue of two takes two events (and the sending
    thread holds one) and drops the rest at once: the request path never waits."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections queue in the backlog and are never answered
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
    sender = WebhookSender(url, SIGNING_KEY, queue_size=2, attempts=1, timeout_seconds=1.0)
    trail = AuditTrail(b"k" * 32, sender)
    try:
        started = time.monotonic()
        for _ in range(50):
            trail.emit("otp.sent", credential=ADA, resend=False)
        assert time.monotonic() - started < 0.5
        assert 47 <= sender.dropped <= 48
    finally:
        trail.close(timeout_seconds=0.1)
        silent.close()


async def test_the_browser_flow_emits_its_events_to_the_webhook(
    make_app: AppFactory,
    client_for: Callable[[OtpApp], httpx.AsyncClient],
    sender: RecordingSender,
    receiver: Receiver,
) -> None:
    """Create, a wrong code, a resend and the right code reach a configured webhook, in
    order, as otp.sent, otp.failed, otp.sent and otp.verified (with one key.rotated: the
    first cookie made the period's key), each verified, with the request id and no code or
    address in clear."""
    operations = OperationsConfig(events_webhook_url=receiver.url, events_webhook_key=SIGNING_KEY)
    app = make_app(operations=operations, policy_overrides={"resend_cooldown_seconds": 0})
    browser = Browser(client_for(app))
    created = await browser.create("ada@example.com")
    await browser.verify(wrong(sender.last_code))
    await browser.resend()
    verified = await browser.verify(sender.last_code)
    assert verified.status_code == 200
    receiver.wait_for(5)
    events = [verify_standard_webhook(SECRET, h, b) for h, b in receiver.requests]
    assert [e["type"] for e in events].count("key.rotated") == 1
    # One sending thread: events arrive in the order they happened.
    flow = [e for e in events if e["type"] != "key.rotated"]
    assert [e["type"] for e in flow] == ["otp.sent", "otp.failed", "otp.sent", "otp.verified"]
    first = flow[0]
    assert first["data"]["request_id"] == created.headers["x-request-id"]  # type: ignore[index]
    text = "\n".join(b.decode() for _, b in receiver.requests)
    assert_no_leaks(text, ["ada@example.com", *(m.code for m in sender.sent)])
    audit.install(AuditTrail(b"k" * 32))


async def test_a_new_key_is_one_key_rotated_event_across_instances(
    make_app: AppFactory, redis_url: str
) -> None:
    """Two instances on one Redis seal their first cookies of a period: the one whose
    candidate key won emits `key.rotated` with the key number, the other emits nothing."""
    first = make_app(store_url=redis_url)
    second = make_app(store_url=redis_url)
    with captured_records() as records:
        now = time.time()
        number, _ = await first.state.keyring.current(now)
        assert (await second.state.keyring.current(now))[0] == number
    rotated = [
        line for line in records.lines if line.startswith("INFO otpserver.audit: audit key.rotated")
    ]
    assert len(rotated) == 1
    events = [json.loads(line) for line in records.lines if line.startswith("{")]
    keyed = [e["event"] for e in events if e.get("event", {}).get("type") == "key.rotated"]
    assert [e["data"]["key_number"] for e in keyed] == [number]
