"""The sign-in page in a real headless Chromium against a real server process."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    Request,
    ViewportSize,
    expect,
)

from tests.support.process import ServerProcess

from .conftest import CREDENTIAL_SENDS, MAX_ATTEMPTS, SHORT_TTL_SECONDS, Sites

pytestmark = pytest.mark.e2e

ADDRESS_LABEL = "Email address or phone number"
PHONE_VIEWPORT: ViewportSize = {"width": 360, "height": 740}


def wrong(code: str) -> str:
    """A code of the same shape that is certainly not `code`."""
    return "".join(str((int(digit) + 1) % 10) for digit in code)


def send_code(page: Page, credential: str) -> None:
    """Ask for a code on the start step and wait for the code step."""
    page.get_by_label(ADDRESS_LABEL).fill(credential)
    page.get_by_role("button", name="Send code").click()
    expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()


def submit_code(page: Page, code: str) -> None:
    """Type a code and press Verify."""
    page.get_by_label("Code", exact=True).fill(code)
    page.get_by_role("button", name="Verify").click()


def expect_verified(page: Page, credential: str) -> None:
    """The success step names the verified credential."""
    expect(page.get_by_role("heading", name="Verified")).to_be_visible()
    expect(page.locator("#done-credential")).to_have_text(credential)


def fits_width(page: Page) -> bool:
    """True when nothing on the page scrolls sideways."""
    fits: bool = page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )
    return fits


def test_keyboard_only_sign_in(
    page: Page, context: BrowserContext, otp_server: ServerProcess, email: str
) -> None:
    """A person using only the keyboard gets a code, types it and is verified."""
    page.goto("/")
    page.keyboard.press("Tab")
    expect(page.get_by_label(ADDRESS_LABEL)).to_be_focused()
    page.keyboard.type(email)
    page.keyboard.press("Enter")

    expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    expect(page.locator("#sent-note")).to_have_text(f"We sent a code to {email}.")
    expect(page.locator("#expiry")).to_have_text(re.compile(r"The code expires in [45]:\d\d\."))
    code_input = page.get_by_label("Code", exact=True)
    expect(code_input).to_be_focused()
    expect(code_input).to_have_attribute("autocomplete", "one-time-code")
    expect(code_input).to_have_attribute("inputmode", "numeric")

    page.keyboard.type(otp_server.wait_for_code(email))
    page.keyboard.press("Enter")

    expect_verified(page, email)
    assert [c for c in context.cookies() if c["name"] == "otp"] == []


def test_pasted_code_with_spaces_and_dashes(
    page: Page, context: BrowserContext, otp_server: ServerProcess, email: str
) -> None:
    """A code pasted as "12-34 56" from the clipboard is cleaned up and accepted."""
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=otp_server.url)
    page.goto("/")
    send_code(page, email)
    code = otp_server.wait_for_code(email)
    pasted = f" {code[:2]}-{code[2:4]} {code[4:]} "
    page.evaluate("text => navigator.clipboard.writeText(text)", pasted)

    code_input = page.get_by_label("Code", exact=True)
    code_input.focus()
    page.keyboard.press("ControlOrMeta+V")
    expect(code_input).to_have_value(code)
    page.keyboard.press("Enter")

    expect_verified(page, email)


def test_wrong_code_then_right_code(page: Page, otp_server: ServerProcess, email: str) -> None:
    """A wrong code shows how many attempts are left, and the right code still works."""
    page.goto("/")
    send_code(page, email)
    code = otp_server.wait_for_code(email)

    submit_code(page, wrong(code))
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("That code is not correct.")
    expect(alert).to_contain_text(f"{MAX_ATTEMPTS - 1} attempts left.")
    expect(page.get_by_role("button", name="Verify")).to_be_enabled()

    submit_code(page, code)
    expect_verified(page, email)
    expect(alert).to_be_empty()


def test_repeated_wrong_codes_show_a_block_countdown(
    page: Page, otp_server: ServerProcess, screenshot_dir: Path
) -> None:
    """After a temporary verify block the button waits for its countdown, then works again."""
    email = "grace@example.com"  # readable in the screenshot; no other test uses it
    page.goto("/")
    send_code(page, email)
    code = otp_server.wait_for_code(email)
    submit_code(page, wrong(code))
    expect(page.get_by_role("alert")).to_contain_text(f"{MAX_ATTEMPTS - 1} attempts left.")

    with page.expect_response("**/api/otp/verify") as answer:
        submit_code(page, wrong(code))
    blocked_until = answer.value.json().get("otpBlock")
    assert blocked_until, "the default policy blocks verification after a second wrong code"

    verify = page.get_by_role("button", name="Verify")
    expect(page.get_by_role("alert")).to_contain_text("1 attempt left. You can try again in")
    expect(verify).to_be_disabled()
    expect(page.locator("#verify-wait")).to_have_text(
        re.compile(r"You can try the code again in 0:0\d\.")
    )
    page.screenshot(path=screenshot_dir / "blocked.png", full_page=True)
    expect(verify).to_be_enabled(timeout=15_000)
    expect(page.locator("#verify-wait")).to_be_empty()

    submit_code(page, code)
    expect_verified(page, email)


def test_resend_after_countdown(page: Page, otp_server: ServerProcess, email: str) -> None:
    """The resend button counts down, then sends a new code that replaces the old one."""
    page.goto("/")
    send_code(page, email)
    first = otp_server.wait_for_code(email)
    resend = page.get_by_role("button", name="Send a new code")
    expect(resend).to_be_disabled()
    expect(page.locator("#resend-wait")).to_have_text(re.compile(r"Available in 0:0[12]\."))

    expect(resend).to_be_enabled(timeout=10_000)
    resend.click()
    second = otp_server.wait_for_code(email, count=2)
    expect(page.locator("#status")).to_contain_text("We sent a new code")
    expect(resend).to_be_disabled()

    if second != first:
        submit_code(page, first)
        expect(page.get_by_role("alert")).to_contain_text("That code is not correct.")
    submit_code(page, second)
    expect_verified(page, email)


def test_expired_code_leads_to_a_new_one(
    browser: Browser, short_lived_server: ServerProcess, email: str
) -> None:
    """When the countdown runs out, Verify is disabled and "Send a new code" sends a fresh one."""
    context = browser.new_context(base_url=short_lived_server.url)
    try:
        page = context.new_page()
        page.goto("/")
        send_code(page, email)
        short_lived_server.wait_for_code(email)
        expect(page.locator("#expiry")).to_have_text(
            "The code has expired. Send a new code.", timeout=(SHORT_TTL_SECONDS + 10) * 1000
        )
        expect(page.get_by_role("button", name="Verify")).to_be_disabled()

        page.get_by_role("button", name="Send a new code").click()
        second = short_lived_server.wait_for_code(email, count=2)
        expect(page.locator("#sent-note")).to_have_text(f"We sent a code to {email}.")
        # Within the new code's short lifetime, so no check of the old code here.
        submit_code(page, second)
        expect_verified(page, email)
    finally:
        context.close()


def test_cookie_is_invisible_to_page_scripts(
    page: Page, context: BrowserContext, email: str
) -> None:
    """The pending-verification cookie is HttpOnly and SameSite=Strict, so scripts never see it."""
    page.goto("/")
    send_code(page, email)

    cookies = [c for c in context.cookies() if c["name"] == "otp"]
    assert len(cookies) == 1
    assert cookies[0]["httpOnly"]
    assert cookies[0]["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""


def test_allowed_other_origin_signs_in_with_cors(
    page: Page, context: BrowserContext, otp_server: ServerProcess, sites: Sites, email: str
) -> None:
    """The page served from an origin in OTP_CORS_ORIGINS completes the flow across origins."""
    page.goto(f"{sites.allowed}/")
    assert page.evaluate("document.documentElement.dataset.apiBase") == otp_server.url
    with page.expect_response("**/api/otp/create") as created:
        send_code(page, email)
    assert created.value.headers["access-control-allow-origin"] == sites.allowed
    assert created.value.headers["access-control-allow-credentials"] == "true"
    assert [c["name"] for c in context.cookies(otp_server.url)] == ["otp"]

    submit_code(page, otp_server.wait_for_code(email))
    expect_verified(page, email)


def test_refused_origin_can_neither_send_nor_verify(
    page: Page, context: BrowserContext, otp_server: ServerProcess, sites: Sites, email: str
) -> None:
    """A same-site origin outside OTP_CORS_ORIGINS gets no code sent and cannot verify one."""
    page.goto(f"{sites.refused}/")
    page.get_by_label(ADDRESS_LABEL).fill(email)
    page.get_by_role("button", name="Send code").click()
    expect(page.get_by_role("alert")).to_contain_text("Could not reach the sign-in service")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

    # The server's stderr is ordered: once a later code shows up, an earlier one never will.
    victim = page.context.new_page()
    victim.goto("/")
    send_code(victim, f"barrier-{email}")
    code = otp_server.wait_for_code(f"barrier-{email}")
    assert otp_server.codes_for(email) == []

    # A simple form POST needs no preflight, so the browser sends it with the (same-site)
    # cookie; the server must refuse it by its Origin before looking at the code.
    with page.expect_response("**/api/otp/verify") as refused:
        page.evaluate(
            """([url, code]) => fetch(url, {method: "POST", mode: "no-cors",
                credentials: "include", body: new URLSearchParams({otp: code})})""",
            [f"{otp_server.url}/api/otp/verify", code],
        )
    # 403 for the right code: refused by origin. Had it been evaluated, the cookie would be
    # spent and the victim's own verify below would fail.
    assert refused.value.status == 403

    submit_code(victim, code)
    expect_verified(victim, f"barrier-{email}")


def test_replayed_requests_from_history_are_refused(
    page: Page, playwright_driver: Playwright, otp_server: ServerProcess, email: str
) -> None:
    """Replaying verify requests captured from the page's history answers OTP:INVALID_COOKIE."""
    verifies: list[Request] = []
    page.on("request", lambda r: verifies.append(r) if r.url.endswith("/api/otp/verify") else None)
    page.goto("/")
    send_code(page, email)
    code = otp_server.wait_for_code(email)
    submit_code(page, wrong(code))
    expect(page.get_by_role("alert")).to_contain_text("attempts left")
    submit_code(page, code)
    expect_verified(page, email)
    assert len(verifies) == 2

    replayer = playwright_driver.request.new_context()
    try:
        for original in verifies:
            headers = original.all_headers()
            assert "otp=" in headers.get("cookie", "")
            replay = replayer.post(
                original.url,
                headers={
                    name: headers[name] for name in ("cookie", "content-type", "origin", "accept")
                },
                data=original.post_data or "",
            )
            assert replay.status == 400
            assert json.loads(replay.text())["error"] == "OTP:INVALID_COOKIE"
    finally:
        replayer.dispose()


def test_stale_cookie_sends_the_person_back_to_start(
    page: Page, context: BrowserContext, otp_server: ServerProcess, email: str
) -> None:
    """When the cookie is gone the page explains it and returns to the address step."""
    page.goto("/")
    send_code(page, email)
    code = otp_server.wait_for_code(email)
    context.clear_cookies()

    submit_code(page, code)
    expect(page.get_by_role("alert")).to_contain_text("This sign-in is no longer valid")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_label(ADDRESS_LABEL)).to_have_value(email)


def test_different_address_and_back(page: Page, otp_server: ServerProcess, email: str) -> None:
    """Switching to another address and typing the first one again resumes its pending code."""
    other = f"other-{email}"
    page.goto("/")
    send_code(page, email)
    page.get_by_role("button", name="Use a different address").click()
    expect(page.locator("#status")).to_contain_text(f"type {email} again")
    send_code(page, other)
    expect(page.locator("#pending-note")).to_contain_text("2 addresses are waiting")

    page.get_by_role("button", name="Use a different address").click()
    with page.expect_response("**/api/otp/create") as created:
        send_code(page, email)
    assert created.value.json()["sent"] is False
    expect(page.locator("#sent-note")).to_have_text(
        f"A code was already sent to {email} from this browser. Enter it below."
    )

    submit_code(page, otp_server.wait_for_code(email))
    expect_verified(page, email)
    assert len(otp_server.codes_for(email)) == 1


def test_invalid_address_is_explained(page: Page) -> None:
    """An address the server refuses shows how to write a valid one."""
    page.goto("/")
    page.get_by_label(ADDRESS_LABEL).fill("not an address")
    page.get_by_role("button", name="Send code").click()
    expect(page.get_by_role("alert")).to_contain_text("Enter a valid email address")
    expect(page.get_by_label(ADDRESS_LABEL)).to_be_focused()


def test_rate_limit_is_explained_with_a_countdown(
    page: Page, otp_server: ServerProcess, email: str
) -> None:
    """After too many codes for one address the page gives the wait and lets another address go."""
    for _ in range(CREDENTIAL_SENDS):
        # One client per request: no cookie, so each create sends a code.
        answer = httpx.post(
            f"{otp_server.url}/api/otp/create", json={"email": email}, trust_env=False
        )
        assert answer.status_code == 200
    page.goto("/")
    page.get_by_label(ADDRESS_LABEL).fill(email)
    with page.expect_response("**/api/otp/create") as refused:
        page.get_by_role("button", name="Send code").click()
    assert refused.value.status == 429
    expect(page.get_by_role("alert")).to_contain_text("Too many requests. Please wait")
    expect(page.locator("#start-wait")).to_have_text(re.compile(r"You can try again in \d+:\d\d\."))
    assert len(otp_server.codes_for(email)) == CREDENTIAL_SENDS

    send_code(page, f"other-{email}")
    submit_code(page, otp_server.wait_for_code(f"other-{email}"))
    expect_verified(page, f"other-{email}")


def test_states_fit_a_phone_and_are_captured(
    browser: Browser, otp_server: ServerProcess, screenshot_dir: Path
) -> None:
    """Every step fits a 360 px screen without sideways scrolling, captured as screenshots."""
    # Readable credentials for the pictures; no other test uses them.
    email, phone_typed, phone = "ada@example.com", "+1 415 555 0100", "+14155550100"
    desktop = browser.new_context(
        base_url=otp_server.url, viewport={"width": 720, "height": 540}, color_scheme="light"
    )
    small = browser.new_context(
        base_url=otp_server.url,
        viewport=PHONE_VIEWPORT,
        color_scheme="light",
        is_mobile=True,
        has_touch=True,
    )
    try:
        page = desktop.new_page()
        page.goto("/")
        page.screenshot(path=screenshot_dir / "start.png", full_page=True)
        send_code(page, email)
        code = otp_server.wait_for_code(email)
        expect(page.locator("#resend-wait")).not_to_be_empty()
        page.screenshot(path=screenshot_dir / "code.png", full_page=True)
        submit_code(page, wrong(code))
        expect(page.get_by_role("alert")).to_contain_text("attempts left")
        page.screenshot(path=screenshot_dir / "wrong-code.png", full_page=True)
        submit_code(page, code)
        expect_verified(page, email)
        page.screenshot(path=screenshot_dir / "success.png", full_page=True)

        page = small.new_page()
        page.goto("/")
        page.get_by_label(ADDRESS_LABEL).fill("a.rather.long.address.with.many.parts@example.com")
        assert fits_width(page)
        send_code(page, phone_typed)
        expect(page.locator("#sent-note")).to_have_text(
            f"We sent a code by text message to {phone}."
        )
        code = otp_server.wait_for_code(phone)
        assert fits_width(page)
        page.screenshot(path=screenshot_dir / "phone-code.png", full_page=True)
        submit_code(page, wrong(code))
        expect(page.get_by_role("alert")).to_contain_text("attempts left")
        assert fits_width(page)
        page.screenshot(path=screenshot_dir / "phone-wrong-code.png", full_page=True)
        submit_code(page, code)
        expect_verified(page, phone)
        assert fits_width(page)
    finally:
        desktop.close()
        small.close()
