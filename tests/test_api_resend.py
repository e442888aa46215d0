"""POST /api/otp/resend: cooldown, cap, new code replaces the old, attempts kept."""

from __future__ import annotations

import httpx

from tests.support.api import Browser, wrong
from tests.support.fakes import FakeClock, RecordingSender

STORES = ["memory", "redis", "valkey"]
"""Valkey too: the API behaves alike on either server."""


async def test_resend_inside_cooldown_is_429_and_sends_nothing(
    client: httpx.AsyncClient, sender: RecordingSender, clock: FakeClock
) -> None:
    """Inside the 30 s cooldown: RESEND_NOT_ALLOWED with Retry-After, and no message."""
    browser = Browser(client)
    await browser.create()
    clock.advance(10)
    response = await browser.resend()
    assert response.status_code == 429
    assert response.json()["error"] == "OTP:RESEND_NOT_ALLOWED"
    assert response.json()["resendBlock"] == "2027-01-15T08:00:30Z"
    assert response.headers["retry-after"] == "20"
    assert len(sender.sent) == 1


async def test_resend_replaces_the_code_and_keeps_attempts(
    client: httpx.AsyncClient, sender: RecordingSender, clock: FakeClock
) -> None:
    """After the cooldown a new code is sent, the old one stops working, attempts are not reset."""
    browser = Browser(client)
    await browser.create()
    old = sender.last_code
    await browser.verify(wrong(old))
    clock.advance(30)
    response = await browser.resend()
    assert response.status_code == 200
    body = response.json()
    assert body["sent"] is True
    assert body["attemptsLeft"] == 2
    assert body["resendsLeft"] == 2
    assert body["expires"] == "2027-01-15T08:05:30Z"
    assert len(sender.sent) == 2
    assert sender.sent[1].is_resend
    new = sender.last_code
    if new != old:
        refused = await browser.verify(old)
        assert refused.json()["error"] == "OTP:INCORRECT"
        clock.advance(5)  # the second wrong code blocks verification briefly
    assert (await browser.verify(new)).status_code == 200


async def test_resends_are_capped(
    client: httpx.AsyncClient, sender: RecordingSender, clock: FakeClock
) -> None:
    """After max_resends, resend is refused with 429 until the entry expires."""
    browser = Browser(client)
    await browser.create()
    for _ in range(3):
        clock.advance(30)
        assert (await browser.resend()).status_code == 200
    clock.advance(30)
    response = await browser.resend()
    assert response.status_code == 429
    assert response.json()["resendBlock"] is None
    assert int(response.headers["retry-after"]) == 270
    assert len(sender.sent) == 4


async def test_resend_of_an_expired_code_is_expired(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """An expired entry cannot be resent; the client must create again."""
    browser = Browser(client)
    await browser.create()
    clock.advance(300)
    response = await browser.resend()
    assert response.json()["error"] == "OTP:EXPIRED"


async def test_resend_without_cookie_is_invalid_cookie(client: httpx.AsyncClient) -> None:
    """Resend needs the cookie."""
    response = await client.post("/api/otp/resend")
    assert response.json()["error"] == "OTP:INVALID_COOKIE"


async def test_resend_send_failure_keeps_the_old_cookie_and_count(
    client: httpx.AsyncClient, sender: RecordingSender, clock: FakeClock
) -> None:
    """A failed resend costs no resend and the previous cookie and code keep working."""
    browser = Browser(client)
    await browser.create()
    code = sender.last_code
    clock.advance(30)
    sender.fail_with = "timeout"
    failed = await browser.resend()
    assert failed.status_code == 502
    sender.fail_with = None
    retried = await browser.resend()
    assert retried.json()["resendsLeft"] == 2
    assert len(sender.sent) == 2
    assert code != ""
    assert (await browser.verify(sender.last_code)).status_code == 200
