"""Log hygiene: no log record ever carries a code, a cookie value, a key or a secret."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable

import httpx
import pytest

from otpserver.http.app import OtpApp
from tests.conftest import MASTER_KEY, MASTER_KEY_TEXT, AppFactory
from tests.support.api import Browser, wrong
from tests.support.fakes import FakeClock, RecordingSender


async def test_no_secret_reaches_any_log_record(
    make_app: AppFactory,
    store: str,
    client_for: Callable[[OtpApp], httpx.AsyncClient],
    sender: RecordingSender,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A whole session with every kind of failure logs no code, cookie, KEK or master key."""
    caplog.set_level(logging.DEBUG)
    app = make_app(store)
    browser = Browser(client_for(app))
    await browser.create("ada@example.com")
    await browser.verify(wrong(sender.last_code))
    await browser.verify("not-a-code")
    await browser.post("/api/otp/verify", cookie="tampered-cookie", data={"otp": "123456"})
    clock.advance(30)
    sender.fail_with = "provider rejected the message"
    await browser.resend()
    sender.fail_with = None
    await browser.resend()
    await browser.verify(sender.last_code)
    _, kek = await app.state.keyring.current(clock())

    secrets_seen = [m.code for m in sender.sent] + browser.history
    secrets_seen += [MASTER_KEY_TEXT, MASTER_KEY.hex(), kek.hex()]
    secrets_seen.append(base64.urlsafe_b64encode(kek).decode().rstrip("="))
    text = "\n".join(record.getMessage() + (record.exc_text or "") for record in caplog.records)
    assert any("delivery failed" in r.getMessage() for r in caplog.records)
    for secret in secrets_seen:
        assert secret not in text
