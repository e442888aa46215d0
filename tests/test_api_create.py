"""POST /api/otp/create: sending codes, multi-credential cookies, validation, rollback."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from otpserver.http.app import OtpApp
from tests.conftest import AppFactory
from tests.support.api import Browser
from tests.support.fakes import FakeClock, RecordingSender

STORES = ["memory", "redis", "valkey"]
"""Valkey too: the API behaves alike on either server."""


async def test_create_sends_a_code_and_returns_public_state(
    client: httpx.AsyncClient, sender: RecordingSender, clock: FakeClock
) -> None:
    """A new credential gets one code of the policy's length and the documented body."""
    browser = Browser(client)
    response = await browser.create("Ada@Example.COM")
    assert response.status_code == 200
    assert response.json() == {
        "credential": "ada@example.com",
        "channel": "email",
        "sent": True,
        "expires": "2027-01-15T08:05:00Z",
        "resendBlock": "2027-01-15T08:00:30Z",
        "otpBlock": None,
        "attemptsLeft": 3,
        "resendsLeft": 3,
        "pending": 1,
    }
    assert len(sender.sent) == 1
    assert sender.sent[0].credential.address == "ada@example.com"
    assert len(sender.last_code) == 6
    assert sender.last_code.isdigit()
    assert browser.cookie is not None


async def test_phone_credentials_are_normalized_to_e164(
    client: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """A valid international number is accepted and sent to in E.164 form."""
    response = await client.post("/api/otp/create", json={"phone": "+1 415 555 2671"})
    assert response.status_code == 200
    assert response.json()["credential"] == "+14155552671"
    assert sender.sent[0].credential.channel == "phone"


async def test_pending_credential_becomes_current_without_resending(
    client: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """Creating an already pending credential switches to it and sends nothing."""
    browser = Browser(client)
    await browser.create("ada@example.com")
    ada_code = sender.last_code
    await browser.create("bob@example.com")
    again = await browser.create("ada@example.com")
    assert again.json()["sent"] is False
    assert again.json()["credential"] == "ada@example.com"
    assert again.json()["pending"] == 2
    assert len(sender.sent) == 2
    verified = await browser.verify(ada_code)
    assert verified.json()["credential"] == "ada@example.com"


async def test_too_many_credentials_are_refused(
    client: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """A fourth pending credential is refused with TOO_MANY_CREDENTIALS and not sent to."""
    browser = Browser(client)
    for name in ("a", "b", "c"):
        assert (await browser.create(f"{name}@example.com")).status_code == 200
    response = await browser.create("d@example.com")
    assert response.status_code == 400
    assert response.json()["error"] == "OTP:TOO_MANY_CREDENTIALS"
    assert len(sender.sent) == 3


async def test_expired_entries_free_their_slot(client: httpx.AsyncClient, clock: FakeClock) -> None:
    """Once pending codes expire, new credentials fit again."""
    browser = Browser(client)
    for name in ("a", "b", "c"):
        await browser.create(f"{name}@example.com")
    clock.advance(301)
    response = await browser.create("d@example.com")
    assert response.status_code == 200
    assert response.json()["pending"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-address"},
        {"email": "ada@example.com\r\nBcc: eve@example.com"},
        {"email": "ada@exam\x00ple.com"},
        {"email": "a" * 250 + "@example.com"},
        {"email": '"quoted"@example.com'},
        {"email": "ada@[127.0.0.1]"},
        {"phone": "4155552671"},
        {"phone": "+1415"},
        {"phone": "+999 123"},
        {"email": "ada@example.com", "phone": "+14155552671"},
        {},
        {"email": "ada@example.com", "admin": True},
        {"email": 12},
        {"email": ["ada@example.com"]},
        {"email": "ada@example.com", "locale": "fr; DROP"},
    ],
)
async def test_invalid_credentials_are_refused(
    client: httpx.AsyncClient, sender: RecordingSender, body: dict[str, object]
) -> None:
    """Bad, long, injected, ambiguous or unknown fields: CREDENTIAL:INVALID, nothing sent."""
    response = await client.post("/api/otp/create", json=body)
    assert response.status_code == 400
    assert response.json()["error"] == "CREDENTIAL:INVALID"
    assert sender.sent == []


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (
            b"email=ada@example.com",
            "application/x-www-form-urlencoded",
            415,
            "BODY:UNSUPPORTED_MEDIA_TYPE",
        ),
        (b'{"email": "ada@example.com"}', "text/plain", 415, "BODY:UNSUPPORTED_MEDIA_TYPE"),
        (b"{not json", "application/json", 400, "BODY:INVALID"),
        (b'["ada@example.com"]', "application/json", 400, "BODY:INVALID"),
        (b"\xff\xfe", "application/json", 400, "BODY:INVALID"),
        # JSON is UTF-8 only (RFC 8259): no byte-order mark, no UTF-16, no lone surrogates.
        (b'\xef\xbb\xbf{"email": "ada@example.com"}', "application/json", 400, "BODY:INVALID"),
        ('{"email": "ada@example.com"}'.encode("utf-16"), "application/json", 400, "BODY:INVALID"),
        (b'{"email": "ada\\ud800@example.com"}', "application/json", 400, "BODY:INVALID"),
        (b"[" * 100_000, "application/json", 413, "BODY:TOO_LARGE"),
        (b"[" * 1_000 + b"]" * 1_000, "application/json", 400, "BODY:INVALID"),
    ],
)
async def test_create_accepts_json_objects_only(
    client: httpx.AsyncClient, content: bytes, content_type: str, status: int, code: str
) -> None:
    """Other media types get 415, malformed JSON 400, never 500."""
    response = await client.post(
        "/api/otp/create", content=content, headers={"content-type": content_type}
    )
    assert response.status_code == status
    assert response.json()["error"] == code


async def test_an_invalid_cookie_starts_a_new_list(client: httpx.AsyncClient) -> None:
    """A garbage cookie on create is ignored: the client gets a fresh list."""
    browser = Browser(client)
    response = await browser.create(cookie="garbage")
    assert response.status_code == 200
    assert response.json()["pending"] == 1


async def test_a_superseded_cookie_starts_a_new_list_without_its_entries(
    client: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """Create with an already rotated cookie keeps nothing from it."""
    browser = Browser(client)
    await browser.create("ada@example.com")
    stale = browser.cookie
    await browser.create("bob@example.com")
    response = await browser.create("carol@example.com", cookie=stale)
    assert response.json()["pending"] == 1


async def test_send_failure_is_502_and_loses_nothing(
    make_app: AppFactory,
    store: str,
    client_for: Callable[[OtpApp], httpx.AsyncClient],
    sender: RecordingSender,
) -> None:
    """A provider failure: SEND:FAILED, no cookie set, and the previous cookie still works."""
    browser = Browser(client_for(make_app(store)))
    await browser.create("ada@example.com")
    code, before = sender.last_code, browser.cookie
    sender.fail_with = "provider said no"
    failed = await browser.create("bob@example.com")
    assert failed.status_code == 502
    assert failed.json()["error"] == "SEND:FAILED"
    assert "set-cookie" not in failed.headers
    assert browser.cookie == before
    sender.fail_with = None
    assert (await browser.verify(code)).status_code == 200


async def test_send_failure_on_first_create_leaves_no_cookie(
    client: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """Without a previous cookie, a failed send leaves the client with nothing pending."""
    sender.fail_with = "down"
    response = await Browser(client).create()
    assert response.status_code == 502
    assert "set-cookie" not in response.headers
