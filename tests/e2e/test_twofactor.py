"""The two-factor example (`examples/twofactor`) in a real headless Chromium, against two real
processes: the server on a real Redis and `python -m examples.twofactor`.

The screenshots of the README's "Two-factor login" section are taken here (set
`OTP_SCREENSHOT_DIR=docs/screenshots`).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
import redis
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.conftest import MASTER_KEY_TEXT
from tests.support.process import ServerProcess
from tests.support.redis_server import RedisServer, external_redis_url

pytestmark = pytest.mark.e2e

KEY_ID = "example"
API_KEY = f"otpk_{KEY_ID}_" + "Xb7Rk2Lm9Qp4Vt6Wn8Yz3Cd5Fg1Hj0Ks"
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def twofactor_server(
    redis_server: RedisServer | None, chromium_path: str
) -> Iterator[ServerProcess]:
    """The server in development mode on an emptied Redis, with the example's key. It is
    `python -m tests.support.server` (the tests' own hooks), so a fork's edits to `custom/`
    (say, one email domain only) leave this test passing."""
    url = external_redis_url() or (redis_server.url if redis_server else "")
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    digest = hashlib.sha256(API_KEY.encode()).hexdigest()
    process = ServerProcess(
        {
            "OTP_STORE_URL": url,
            "OTP_MASTER_KEY": MASTER_KEY_TEXT,
            "OTP_API_KEYS": f"{KEY_ID}:{digest}:challenges+totp+backup_codes+devices",
        }
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def example_app(
    twofactor_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The example application as a process of its own, with a fresh SQLite database."""
    database = tmp_path_factory.mktemp("twofactor") / "users.sqlite3"
    process = ServerProcess(
        {"OTPSERVER_URL": twofactor_server.url, "OTP_API_KEY": API_KEY},
        module="examples.twofactor",
        ready_path="/signin",
    )
    process.env.update({"TWOFACTOR_PORT": str(process.port), "TWOFACTOR_DATABASE": str(database)})
    process.start()
    yield process
    process.stop()


@pytest.fixture
def context(browser: Browser, example_app: ServerProcess) -> Iterator[BrowserContext]:
    """A fresh browser context whose relative URLs go to the example application."""
    fresh = browser.new_context(base_url=example_app.url, viewport={"width": 720, "height": 760})
    yield fresh
    fresh.close()


def sign_in(page: Page, email: str) -> None:
    """Submit the password form."""
    page.goto("/signin")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def expect_signed_in(page: Page, email: str) -> None:
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    expect(page.get_by_text(f"Signed in as {email}")).to_be_visible()


def expect_second_step(page: Page) -> None:
    expect(page.get_by_role("heading", name="Second step")).to_be_visible()


def submit_code(page: Page, label: str, code: str, *, trust: bool = False) -> None:
    """Type a code into the form labelled `label` and press its Verify button."""
    form = page.locator("form", has=page.get_by_label(label))
    form.get_by_label(label).fill(code)
    if trust:
        form.get_by_label("Trust this device for 30 days").check()
    form.get_by_role("button", name="Verify").click()


def test_two_factor_journey(
    page: Page,
    context: BrowserContext,
    twofactor_server: ServerProcess,
    example_app: ServerProcess,
    screenshot_dir: Path,
) -> None:
    """Register, enrol TOTP, sign in with TOTP and trust the device, sign in again without a
    second factor, revoke the device so the second factor is asked again, spend a backup
    code once (refused the second time), sign in with an emailed code trusting the device,
    and revoke every device so the second factor is asked again."""
    email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
    page.goto("/register")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect_signed_in(page, email)

    # Enrol an authenticator app: the page shows the server's QR code and the secret.
    page.get_by_role("button", name="Set up an authenticator app").click()
    expect(page.get_by_role("img", name="QR code for your authenticator app")).to_be_visible()
    page.screenshot(path=str(screenshot_dir / "twofactor-enrol.png"))
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    app = pyotp.TOTP(secret)
    page.get_by_label("Code from your app").fill(app.at(time.time()))
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_text("Your authenticator app is set up.")).to_be_visible()

    page.get_by_role("button", name="Generate new backup codes").click()
    codes = page.locator("#backup-codes li").all_inner_texts()
    assert len(codes) == 10
    page.screenshot(path=str(screenshot_dir / "twofactor-backup-codes.png"))
    page.get_by_role("link", name="Done").click()
    page.screenshot(path=str(screenshot_dir / "twofactor-account.png"))
    sign_out(page)

    # Password, then the app's code (the next step: the set-up code's step is spent), trusted.
    page.screenshot(path=str(screenshot_dir / "twofactor-signin.png"))
    sign_in(page, email)
    expect_second_step(page)
    page.screenshot(path=str(screenshot_dir / "twofactor-second-factor.png"))
    submit_code(page, "Code from your app", app.at(time.time() + 30), trust=True)
    expect_signed_in(page, email)
    first_device = next(c for c in context.cookies() if c["name"] == "device")
    assert (first_device["httpOnly"], first_device["sameSite"]) == (True, "Lax")
    sign_out(page)

    # The trusted device skips the second step, and only after the password.
    sign_in(page, email)
    expect_signed_in(page, email)
    page.get_by_role("link", name="Trusted devices").click()
    expect(page.get_by_text("(this device)")).to_be_visible()
    page.screenshot(path=str(screenshot_dir / "twofactor-devices.png"))
    page.get_by_role("button", name="Revoke", exact=True).click()
    expect(page.locator("#no-devices")).to_be_visible()
    sign_out(page)

    # Revoked: the second factor is asked again. A backup code works once.
    sign_in(page, email)
    expect_second_step(page)
    submit_code(page, "One of your backup codes", codes[0].lower().replace("-", " "))
    expect_signed_in(page, email)
    sign_out(page)
    sign_in(page, email)
    expect_second_step(page)
    submit_code(page, "One of your backup codes", codes[0])
    expect(page.get_by_role("alert")).to_have_text("That code is not right.")
    expect_second_step(page)

    # The email code through /v1/challenges: the development server prints it.
    page.get_by_role("button", name="Email me a code").click()
    expect(page.get_by_text(f"We sent a code to {email}.")).to_be_visible()
    submit_code(page, "Code from the email", twofactor_server.wait_for_code(email), trust=True)
    expect_signed_in(page, email)
    device = next(c for c in context.cookies() if c["name"] == "device")

    # Trusted again; "Revoke every device" (revoke-all and a new generation) ends it.
    sign_out(page)
    sign_in(page, email)
    expect_signed_in(page, email)
    page.get_by_role("link", name="Trusted devices").click()
    page.get_by_role("button", name="Revoke every device").click()
    expect(page.locator("#no-devices")).to_be_visible()
    sign_out(page)
    sign_in(page, email)
    expect_second_step(page)

    # The example's log holds none of the secrets it handled.
    log = example_app.output()
    for secret_text in (secret, *codes, first_device["value"], device["value"], PASSWORD, API_KEY):
        assert secret_text not in log
