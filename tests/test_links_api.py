"""Sign-in links (SPEC §18) over the HTTP API, on both stores: what a link may and may not do."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import Callable

import httpx
import jwt
import pytest
from starlette.requests import Request
from starlette.responses import Response

from otpserver.errors import ConfigError
from otpserver.hooks import VerifiedCredential
from otpserver.http.app import OtpApp
from otpserver.settings.environment import Settings
from otpserver.settings.links import LinkSettings
from tests.conftest import AppFactory
from tests.support.api import Browser, wrong
from tests.support.fakes import FakeClock, RecordingSender
from tests.support.hooks import HOOKS
from tests.support.hygiene import captured_records

BASE = "https://otp.example.com"
SAME_BROWSER = LinkSettings(enabled=True, base_url=BASE)
CROSS_DEVICE = LinkSettings(enabled=True, cross_device=True, base_url=BASE)


def link_path(sender: RecordingSender) -> str:
    """The path of the link in the last message sent."""
    link = sender.sent[-1].link
    assert link is not None
    assert link.startswith(f"{BASE}/l/")
    return link[len(BASE) :]


def method_of(result: str) -> str:
    """The `otp_method` a signed result names: `link` for a code its link presented (its
    signature is checked where results are: tests/test_results.py)."""
    claims = jwt.decode(result, options={"verify_signature": False})
    return str(claims["otp_method"])


def number_of(status: httpx.Response) -> str:
    """The two-digit number a pending status shows."""
    body = status.json()
    assert body["status"] == "pending"
    match = body["match"]
    assert isinstance(match, str)
    assert re.fullmatch(r"[0-9]{2}", match)
    return match


def other(number: str) -> str:
    """A two-digit number that is certainly not `number`."""
    return f"{(int(number) + 1) % 100:02d}"


@pytest.fixture
def links_client(
    make_app: AppFactory, store: str, client_for: Callable[[OtpApp], httpx.AsyncClient]
) -> httpx.AsyncClient:
    """A client of a production app on each store, with same-browser links."""
    return client_for(make_app(store, links=SAME_BROWSER))


@pytest.fixture
def cross_client(
    make_app: AppFactory, store: str, client_for: Callable[[OtpApp], httpx.AsyncClient]
) -> httpx.AsyncClient:
    """A client of a production app on each store, with approval from another device."""
    return client_for(make_app(store, links=CROSS_DEVICE))


async def test_email_carries_a_link_only_when_enabled(
    make_app: AppFactory,
    store: str,
    client_for: Callable[[OtpApp], httpx.AsyncClient],
    sender: RecordingSender,
) -> None:
    """Links are off by default; with them on, emails carry one and SMS never does."""
    plain = Browser(client_for(make_app(store)))
    await plain.create()
    assert sender.sent[-1].link is None
    assert (await plain.client.get("/l/anything")).status_code == 404
    assert (await plain.post("/api/otp/status")).status_code == 404

    linked = Browser(client_for(make_app(store, links=SAME_BROWSER)))
    await linked.create("grace@example.com")
    assert link_path(sender).startswith("/l/")
    await linked.post("/api/otp/create", json={"phone": "+14155552671"})
    assert sender.sent[-1].credential.channel == "phone"
    assert sender.sent[-1].link is None


async def test_get_and_head_render_a_static_page_and_change_nothing(
    links_client: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """GET and HEAD answer a script-free confirm page, uncached, and the code still works."""
    browser = Browser(links_client)
    await browser.create()
    path, code = link_path(sender), sender.last_code
    for _ in range(3):
        page = await links_client.get(path, headers={"cookie": f"__Host-otp={browser.cookie}"})
        assert page.status_code == 200
        head = await links_client.head(path)
        assert head.status_code == 200
        assert head.content == b""
    text = page.text
    assert "<script" not in text.lower()
    assert "a••@example.com" in text
    assert "ada@example.com" not in text
    assert code not in text
    assert text.count("<form") == 1
    assert 'method="post"' in text
    assert "action=" not in text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src" not in csp
    assert "set-cookie" not in page.headers
    assert (await browser.verify(code)).status_code == 200


async def test_link_pages_speak_the_language_of_the_browser_opening_them(
    cross_client: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """The device opening the link picks the pages' language (Accept-Language), each page
    still naming the site and the masked account; without a match they are in the default
    language."""
    first = Browser(cross_client)
    await first.create()
    path = link_path(sender)
    german = {"accept-language": "de-CH, de;q=0.9, en;q=0.5"}
    confirm = await cross_client.get(path, headers=german)
    assert '<html lang="de">' in confirm.text
    assert "<h1>Anmeldung bestätigen</h1>" in confirm.text
    assert "<strong>a••@example.com</strong>" in confirm.text
    assert ">Anmelden</button>" in confirm.text
    asked = await cross_client.post(path, headers={"accept-language": "fr"})
    assert '<html lang="fr">' in asked.text
    assert "Nombre affiché sur votre premier appareil" in asked.text
    number = number_of(await first.post("/api/otp/status"))
    spanish = {"accept-language": "es-MX"}
    wrong_once = await cross_client.post(path, data={"match": other(number)}, headers=spanish)
    assert wrong_once.status_code == 403
    assert "Queda un intento." in wrong_once.text
    unknown = await cross_client.get(path, headers={"accept-language": "ja"})
    assert '<html lang="en">' in unknown.text
    assert "Confirm sign-in" in unknown.text


async def test_post_with_the_cookie_signs_in_like_a_typed_code(
    links_client: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """The button's POST with the originating cookie runs the final hook once, then never again."""
    browser = Browser(links_client)
    await browser.create()
    path, cookie = link_path(sender), browser.cookie
    signed_in = await browser.post(path)
    assert signed_in.status_code == 200
    body = signed_in.json()
    assert method_of(body.pop("result")) == "link"
    assert body == {"verified": True, "credential": "ada@example.com", "channel": "email"}
    assert browser.cookie is None

    again = await browser.post(path, cookie=cookie)
    assert again.status_code == 400
    assert "set-cookie" not in again.headers
    typed = await browser.verify(sender.last_code, cookie=cookie)
    assert typed.json()["error"] == "OTP:INVALID_COOKIE"


async def test_post_without_the_cookie_consumes_nothing(
    links_client: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """A scanner's POST (no cookie, or another browser's) shows the code and spends nothing."""
    first = Browser(links_client)
    await first.create()
    path, code = link_path(sender), sender.last_code
    other_browser = Browser(links_client)
    await other_browser.create("grace@example.com")

    bare = await links_client.post(path)
    assert bare.status_code == 200
    assert code in bare.text
    assert "set-cookie" not in bare.headers
    foreign = await other_browser.post(path)
    assert foreign.status_code == 200
    assert code in foreign.text
    assert "set-cookie" not in foreign.headers

    typed = await first.verify(code)
    assert typed.status_code == 200
    assert method_of(typed.json()["result"]) == "email_code"  # typed, though a link was sent
    assert (await other_browser.verify(sender.last_code)).status_code == 200


async def test_a_link_obeys_the_entry_limits(
    links_client: httpx.AsyncClient, sender: RecordingSender, clock: FakeClock
) -> None:
    """During a verify block the link refuses with the block, keeping the cookie; then it works."""
    browser = Browser(links_client)
    await browser.create()
    path, code = link_path(sender), sender.last_code
    await browser.verify(wrong(code))
    blocked = await browser.verify(wrong(code))
    assert blocked.json()["otpBlock"] is not None

    refused = await browser.post(path)
    assert refused.status_code == 403
    assert "<script" not in refused.text.lower()
    assert browser.cookie is not None
    clock.advance(120)
    assert (await browser.post(path)).status_code == 200


async def test_concurrent_clicks_sign_in_once(
    links_client: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """Of several POSTs with the same cookie, exactly one signs in (the single-use ID)."""
    browser = Browser(links_client)
    await browser.create()
    path = link_path(sender)
    header = {"cookie": f"__Host-otp={browser.cookie}"}
    answers = await asyncio.gather(*(links_client.post(path, headers=header) for _ in range(5)))
    assert sorted(a.status_code for a in answers) == [200, 400, 400, 400, 400]


async def test_a_resent_code_retires_the_old_link(
    links_client: httpx.AsyncClient, sender: RecordingSender, clock: FakeClock
) -> None:
    """After a resend the old link no longer signs in; the new one does."""
    browser = Browser(links_client)
    await browser.create()
    old = link_path(sender)
    clock.advance(31)
    assert (await browser.resend()).status_code == 200
    new = link_path(sender)
    assert new != old
    stale = await browser.post(old)
    assert "set-cookie" not in stale.headers
    assert "verified" not in stale.text
    assert (await browser.post(new)).json()["verified"] is True


async def test_expired_or_tampered_links_are_refused(
    links_client: httpx.AsyncClient, sender: RecordingSender, clock: FakeClock
) -> None:
    """A tampered token and an expired one answer the same 404 page; a malformed one, 400."""
    browser = Browser(links_client)
    await browser.create()
    path = link_path(sender)
    flipped = path[:-2] + ("A" if path[-2] != "A" else "B") + path[-1]
    assert (await links_client.get(flipped)).status_code == 404
    assert (await links_client.get("/l/" + "x" * 2000)).status_code == 400
    assert (await links_client.get("/l/not,a+link")).status_code == 400
    clock.advance(301)
    for method in ("GET", "POST"):
        answer = await links_client.request(method, path)
        assert answer.status_code == 404
        assert "no longer works" in answer.text


async def test_status_without_cross_device_shows_no_number(
    links_client: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """With same-browser links only, the status poll is pending with no number to match."""
    browser = Browser(links_client)
    await browser.create()
    status = await browser.post("/api/otp/status")
    assert status.status_code == 200
    body = status.json()
    assert body["status"] == "pending"
    assert body["match"] is None
    assert body["approval"] is None
    assert "set-cookie" not in status.headers
    no_cookie = await links_client.post("/api/otp/status")
    assert no_cookie.json()["error"] == "OTP:INVALID_COOKIE"


async def test_cross_device_approval_signs_in_the_first_tab_only(
    cross_client: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """The right number approves; the first tab's next poll signs in; the other device never."""
    first = Browser(cross_client)
    await first.create()
    path, cookie = link_path(sender), first.cookie
    number = number_of(await first.post("/api/otp/status"))

    asked = await cross_client.post(path)
    assert asked.status_code == 200
    assert 'name="match"' in asked.text
    assert sender.last_code not in asked.text
    wrong_once = await cross_client.post(path, data={"match": other(number)})
    assert wrong_once.status_code == 403
    assert "One try left" in wrong_once.text
    assert (await first.post("/api/otp/status")).json()["approval"] == "waiting"

    approved = await cross_client.post(path, data={"match": number})
    assert approved.status_code == 200
    assert "Approved" in approved.text
    assert "set-cookie" not in approved.headers
    assert "result" not in approved.text

    signed_in = await first.post("/api/otp/status")
    assert signed_in.status_code == 200
    assert signed_in.json()["verified"] is True
    assert method_of(signed_in.json()["result"]) == "link"
    assert first.cookie is None
    replayed = await first.post("/api/otp/status", cookie=cookie)
    assert replayed.json()["error"] == "OTP:INVALID_COOKIE"


async def test_two_wrong_numbers_end_approval(
    cross_client: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """After two wrong numbers even the right one is refused, but the typed code still works."""
    first = Browser(cross_client)
    await first.create()
    path, code = link_path(sender), sender.last_code
    number = number_of(await first.post("/api/otp/status"))
    await cross_client.post(path, data={"match": other(number)})
    ended = await cross_client.post(path, data={"match": other(number)})
    assert ended.status_code == 403
    assert "Approval ended" in ended.text
    late = await cross_client.post(path, data={"match": number})
    assert "Approval ended" in late.text

    status = await first.post("/api/otp/status")
    assert status.json()["approval"] == "ended"
    assert (await first.verify(code)).status_code == 200


async def test_same_browser_click_still_works_with_cross_device_on(
    cross_client: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """With cross-device approval on, the originating browser's own click signs in directly."""
    browser = Browser(cross_client)
    await browser.create()
    assert (await browser.post(link_path(sender))).json()["verified"] is True


async def test_an_approval_lives_no_longer_than_its_code(
    cross_client: httpx.AsyncClient, sender: RecordingSender, clock: FakeClock
) -> None:
    """An approval the first tab never collected dies with the code."""
    first = Browser(cross_client)
    await first.create()
    path = link_path(sender)
    number = number_of(await first.post("/api/otp/status"))
    await cross_client.post(path, data={"match": number})
    clock.advance(301)
    late = await first.post("/api/otp/status")
    assert late.json().get("verified") is None


def test_link_settings_are_checked() -> None:
    """Cross-device needs links, the base URL must be a scheme and host, and both are reported."""
    with pytest.raises(ConfigError) as caught:
        LinkSettings.from_env({"OTP_LINK_CROSS_DEVICE": "true", "OTP_LINK_BASE_URL": "otp.example"})
    assert "OTP_LINKS=true" in str(caught.value)
    assert "OTP_LINK_BASE_URL" in str(caught.value)
    parsed = LinkSettings.from_env(
        {"OTP_LINKS": "TRUE", "OTP_LINK_BASE_URL": "https://otp.example.com/"}
    )
    assert parsed == LinkSettings(enabled=True, base_url="https://otp.example.com")


def test_production_links_need_a_base_url(make_app: AppFactory) -> None:
    """In production a link's host never comes from the request: the base URL is required."""
    with pytest.raises(ConfigError, match="OTP_LINK_BASE_URL"):
        make_app(links=LinkSettings(enabled=True))
    assert isinstance(Settings().links, LinkSettings)


# ---- links on server-to-server challenges ---------------------------------------------


@pytest.fixture
def backend_for(
    make_app: AppFactory, store: str, client_for: Callable[[OtpApp], httpx.AsyncClient]
) -> Callable[[LinkSettings], httpx.AsyncClient]:
    """Clients of production apps with the challenge tests' API keys, on each store."""
    from tests.test_v1_challenges import API

    def make(links: LinkSettings) -> httpx.AsyncClient:
        return client_for(make_app(store, api=API, links=links))

    return make


async def challenge_post(
    client: httpx.AsyncClient, path: str, body: dict[str, object]
) -> httpx.Response:
    """A `/v1` call with the challenge tests' key."""
    from tests.test_v1_challenges import bearer

    return await client.post(path, json=body, headers=bearer())


async def test_a_challenge_link_is_sent_only_when_asked_and_enabled(
    backend_for: Callable[[LinkSettings], httpx.AsyncClient], sender: RecordingSender
) -> None:
    """`link: true` emails a link when links are on, and is refused (400) when they are off."""
    off = backend_for(LinkSettings())
    refused = await challenge_post(
        off, "/v1/challenges", {"email": "ada@example.com", "link": True}
    )
    assert refused.status_code == 400
    assert refused.json()["error"] == "BODY:INVALID"

    on = backend_for(SAME_BROWSER)
    plain = await challenge_post(on, "/v1/challenges", {"email": "ada@example.com"})
    assert plain.status_code == 201
    assert sender.sent[-1].link is None
    assert "match" not in plain.json()
    linked = await challenge_post(on, "/v1/challenges", {"email": "ada@example.com", "link": True})
    assert linked.status_code == 201
    assert linked.json()["match"] is None
    path, code = link_path(sender), sender.last_code
    shown = await on.post(path)
    assert code in shown.text
    assert "set-cookie" not in shown.headers
    checked = await challenge_post(
        on, "/v1/challenges/check", {"challenge": linked.json()["challenge"], "code": code}
    )
    assert checked.json()["status"] == "approved"


async def test_a_challenge_completes_after_approval_by_number(
    backend_for: Callable[[LinkSettings], httpx.AsyncClient], sender: RecordingSender
) -> None:
    """With cross-device links the right number lets `/v1/challenges/status` approve once."""
    client = backend_for(CROSS_DEVICE)
    created = await challenge_post(
        client, "/v1/challenges", {"email": "ada@example.com", "link": True}
    )
    token, number = created.json()["challenge"], created.json()["match"]
    assert re.fullmatch(r"[0-9]{2}", number)
    path = link_path(sender)
    waiting = await challenge_post(client, "/v1/challenges/status", {"challenge": token})
    assert waiting.json() == {"status": "pending", "match": number, "approval": "waiting"}

    approved_page = await client.post(path, data={"match": number})
    assert "Approved" in approved_page.text
    done = await challenge_post(client, "/v1/challenges/status", {"challenge": token})
    assert done.json()["status"] == "approved"
    assert method_of(done.json()["result"]) == "link"
    again = await challenge_post(client, "/v1/challenges/status", {"challenge": token})
    assert again.json()["status"] == "invalid"


async def test_concurrent_wrong_numbers_still_end_approval_after_two(
    cross_client: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """Wrong numbers sent all at once take the two slots between them: the right one then fails."""
    first = Browser(cross_client)
    await first.create()
    path = link_path(sender)
    number = number_of(await first.post("/api/otp/status"))
    answers = await asyncio.gather(
        *(cross_client.post(path, data={"match": other(number)}) for _ in range(6))
    )
    assert sum("One try left" in a.text for a in answers) == 1
    assert sum("Approval ended" in a.text for a in answers) == 5
    late = await cross_client.post(path, data={"match": number})
    assert "Approval ended" in late.text
    assert (await first.post("/api/otp/status")).json()["approval"] == "ended"


async def test_the_final_hook_is_told_when_the_link_brought_the_code(
    make_app: AppFactory,
    client_for: Callable[[OtpApp], httpx.AsyncClient],
    sender: RecordingSender,
) -> None:
    """`VerifiedCredential.via_link` is True for a click with the cookie and for an approval
    by number, False for a typed code, so a hook can tell the three apart; the audit events
    and metrics name the method alike (`link`, `code`)."""
    seen: list[bool] = []
    default_final = HOOKS.final

    async def final(verified: VerifiedCredential, request: Request) -> Response:
        seen.append(verified.via_link)
        return await default_final(verified, request)

    client = client_for(make_app(hooks=dataclasses.replace(HOOKS, final=final), links=CROSS_DEVICE))
    with captured_records() as records:
        clicked = Browser(client)
        await clicked.create()
        same_browser = await clicked.post(link_path(sender))
        assert same_browser.status_code == 200
        typed = Browser(client)
        await typed.create("grace@example.com")
        assert (await typed.verify(sender.last_code)).status_code == 200
        polled = Browser(client)
        await polled.create("alan@example.com")
        number = number_of(await polled.post("/api/otp/status"))
        await client.post(link_path(sender), data={"match": number})
        assert (await polled.post("/api/otp/status")).json()["verified"] is True
    assert seen == [True, False, True]
    events = [json.loads(line).get("event") for line in records.lines if line.startswith("{")]
    verified = [
        event["data"]["method"] for event in events if event and event["type"] == "otp.verified"
    ]
    assert verified == ["link", "code", "link"]
