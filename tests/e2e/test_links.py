"""Sign-in links (SPEC §18) in a real headless Chromium against real server processes."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.support.process import ServerProcess
from tests.support.redis_server import free_port

from .conftest import running_server
from .test_browser import expect_verified, send_code, submit_code

pytestmark = pytest.mark.e2e

DEV_COOKIE = "otp"


@pytest.fixture(scope="module")
def link_server(chromium_path: str) -> Iterator[ServerProcess]:
    """A server whose emails carry same-browser links (the default link mode)."""
    with running_server(free_port(), OTP_LINKS="true") as server:
        yield server


@pytest.fixture(scope="module")
def cross_device_server(chromium_path: str) -> Iterator[ServerProcess]:
    """A server whose links may also approve the first tab from another device."""
    with running_server(free_port(), OTP_LINKS="true", OTP_LINK_CROSS_DEVICE="true") as server:
        yield server


def new_device(browser: Browser, server: ServerProcess) -> BrowserContext:
    """A browser context of its own: another device, with no cookie of the first."""
    return browser.new_context(base_url=server.url, viewport={"width": 800, "height": 640})


def link_for(server: ServerProcess, address: str, timeout: float = 10.0) -> str:
    """The sign-in link of the newest email to `address`, from the development outbox."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        messages = httpx.get(f"{server.url}/dev/outbox").json()["messages"]
        for message in messages:
            if message["to"] == address:
                found = re.search(r"http://\S+/l/[A-Za-z0-9_-]+", message["text"])
                assert found, f"the email carries no link:\n{message['text']}"
                assert found.group(0) in message["html"]
                return found.group(0)
        time.sleep(0.05)
    raise AssertionError(f"no email to {address} in the outbox")


def otp_cookies(context: BrowserContext) -> list[str]:
    """The values of the OTP cookie the context holds."""
    return [c["value"] for c in context.cookies() if c["name"] == DEV_COOKIE]


def test_same_browser_click_signs_in(
    browser: Browser, link_server: ServerProcess, email: str
) -> None:
    """Opening the emailed link in the browser that asked and pressing the button signs in."""
    context = new_device(browser, link_server)
    try:
        first = context.new_page()
        first.goto("/")
        send_code(first, email)
        link = link_for(link_server, email)
        assert otp_cookies(context)

        tab = context.new_page()
        tab.goto(link)
        expect(tab.get_by_role("heading", name="Confirm sign-in")).to_be_visible()
        expect(tab.get_by_text(re.compile(r"•+@example\.com"))).to_be_visible()
        assert tab.locator("script").count() == 0
        # The page's one inline style is allowed by its hash in the CSP, and nothing else is.
        expect(tab.get_by_role("button", name="Sign in")).to_have_css(
            "background-color", "rgb(26, 86, 219)"
        )
        with tab.expect_response(lambda r: r.request.method == "POST") as answer:
            tab.get_by_role("button", name="Sign in").click()
        assert answer.value.status == 200
        body = json.loads(tab.locator("body").inner_text())
        assert body["verified"] is True
        assert body["credential"] == email
        assert body["result"].count(".") == 2
        assert otp_cookies(context) == []
    finally:
        context.close()


def test_a_scanner_spends_nothing(browser: Browser, link_server: ServerProcess, email: str) -> None:
    """GET, HEAD and POST without the cookie, and a foreign browser pressing the button, leave
    the code working; that browser is shown the code and gets no cookie."""
    context = new_device(browser, link_server)
    scanner = new_device(browser, link_server)
    try:
        page = context.new_page()
        page.goto("/")
        send_code(page, email)
        link = link_for(link_server, email)
        code = link_server.wait_for_code(email)

        with httpx.Client() as client:
            for method in ("GET", "HEAD", "GET", "POST", "POST"):
                answer = client.request(method, link)
                assert answer.status_code == 200
                assert "set-cookie" not in answer.headers
            assert code in answer.text

        clicker = scanner.new_page()
        clicker.goto(link)
        clicker.get_by_role("button", name="Sign in").click()
        expect(
            clicker.get_by_role("heading", name="Open this on your first device")
        ).to_be_visible()
        expect(clicker.locator(".code")).to_have_text(code)
        assert otp_cookies(scanner) == []

        submit_code(page, code)
        expect_verified(page, email)
    finally:
        scanner.close()
        context.close()


def test_cross_device_approval_signs_in_the_first_tab(
    browser: Browser, cross_device_server: ServerProcess, email: str
) -> None:
    """The number typed on a second device signs in the first tab; the second stays out."""
    desktop = new_device(browser, cross_device_server)
    phone = new_device(browser, cross_device_server)
    try:
        first: Page = desktop.new_page()
        first.goto("/")
        send_code(first, email)
        number = first.locator("#match")
        expect(number).to_have_text(re.compile(r"^[0-9]{2}$"))
        expect(first.locator("#approval-note")).to_have_text("Waiting for approval…")
        shown = number.inner_text()

        other = phone.new_page()
        other.goto(link_for(cross_device_server, email))
        other.get_by_role("button", name="Sign in").click()
        field = other.get_by_label("Number shown on your first device")
        wrong_number = f"{(int(shown) + 1) % 100:02d}"
        field.fill(wrong_number)
        other.get_by_role("button", name="Approve").click()
        expect(other.get_by_text("One try left")).to_be_visible()
        other.get_by_label("Number shown on your first device").fill(shown)
        other.get_by_role("button", name="Approve").click()
        expect(other.get_by_role("heading", name="Approved")).to_be_visible()

        expect_verified(first, email)
        assert otp_cookies(desktop) == []
        assert phone.cookies() == []
    finally:
        phone.close()
        desktop.close()
