"""Abuse limits through the HTTP API, on both stores: sends, addresses, budgets, lockouts."""

from __future__ import annotations

import asyncio

import httpx
import redis

from otpserver.settings.overrides import LimitOverrides
from otpserver.settings.proxies import parse_trusted_proxies
from otpserver.stores.redis import COUNTER_PREFIX
from tests.conftest import AppFactory
from tests.support.api import Browser, wrong
from tests.support.fakes import FakeClock, RecordingSender
from tests.support.peers import Peers, address

EMAIL = "ada@example.com"
LOCKOUT_SECONDS = 900


def limits(**numbers: int) -> LimitOverrides:
    """Environment-style overrides of single limit numbers."""
    return LimitOverrides(numbers=numbers)


def assert_rate_limited(response: httpx.Response) -> int:
    """The one refusal shape of every limit; returns its Retry-After."""
    assert response.status_code == 429
    retry_after = int(response.headers["retry-after"])
    assert response.json() == {
        "error": "RATE:LIMITED",
        "message": "Too many requests. Try again later.",
        "retryAfter": retry_after,
    }
    assert response.headers["ratelimit"] == f'"otp";r=0;t={retry_after}'
    return retry_after


async def test_sends_per_credential_are_capped_across_cookies_and_addresses(
    make_app: AppFactory, store: str, peers: Peers, sender: RecordingSender, clock: FakeClock
) -> None:
    """Five codes per ten minutes reach one credential, whoever asks; the window then reopens."""
    app = make_app(store)
    for i in range(5):
        assert (await peers.browser(app, address(i)).create(EMAIL)).status_code == 200
        clock.advance(10)
    refused = await peers.browser(app, address(99)).create(EMAIL)
    assert assert_rate_limited(refused) == 600 - 50
    assert "set-cookie" not in refused.headers
    assert len(sender.sent) == 5
    clock.advance(550)
    assert (await peers.browser(app, address(99)).create(EMAIL)).status_code == 200


async def test_a_refused_send_calls_the_sender_zero_times(
    make_app: AppFactory, store: str, peers: Peers, sender: RecordingSender, clock: FakeClock
) -> None:
    """Neither a refused create nor a refused resend reaches the sender."""
    app = make_app(store, limit_overrides=limits(credential_sends=2))
    browser = peers.browser(app, address(1))
    await browser.create(EMAIL)
    await peers.browser(app, address(2)).create(EMAIL)
    calls = len(sender.sent)
    clock.advance(30)
    assert_rate_limited(await browser.resend())
    assert_rate_limited(await peers.browser(app, address(3)).create(EMAIL))
    assert len(sender.sent) == calls == 2


async def test_a_burst_of_creates_sends_exactly_the_limit(
    make_app: AppFactory, store: str, peers: Peers, sender: RecordingSender
) -> None:
    """Of 40 parallel creates for one credential from 40 addresses, exactly 5 send."""
    app = make_app(store)
    browsers = [peers.browser(app, address(i)) for i in range(40)]
    responses = await asyncio.gather(*(b.create(EMAIL) for b in browsers))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 5 + [429] * 35
    assert len(sender.sent) == 5


async def test_resends_count_and_never_reset_the_credentials_sends(
    make_app: AppFactory, store: str, peers: Peers, sender: RecordingSender, clock: FakeClock
) -> None:
    """Creates and resends draw on one allowance; a new cookie starts no new one."""
    app = make_app(store)
    first = peers.browser(app, address(1))
    await first.create(EMAIL)
    for _ in range(3):
        clock.advance(30)
        assert (await first.resend()).status_code == 200
    second = peers.browser(app, address(2))
    assert (await second.create(EMAIL)).status_code == 200
    clock.advance(30)
    assert_rate_limited(await second.resend())
    assert len(sender.sent) == 5


async def test_requests_per_address_are_capped_in_a_burst(
    make_app: AppFactory, store: str, peers: Peers, sender: RecordingSender
) -> None:
    """Of 30 parallel creates for 30 credentials from one address, exactly the limit pass."""
    app = make_app(store, limit_overrides=limits(address_requests=7))
    browsers = [peers.browser(app, address(1)) for _ in range(30)]
    responses = await asyncio.gather(
        *(b.create(f"user{i}@example.com") for i, b in enumerate(browsers))
    )
    assert sum(r.status_code == 200 for r in responses) == 7
    assert len(sender.sent) == 7
    assert (await peers.browser(app, address(2)).create("other@example.com")).status_code == 200


async def test_making_a_pending_credential_current_is_checked_but_not_charged(
    make_app: AppFactory, store: str, peers: Peers, sender: RecordingSender
) -> None:
    """Switching back to a pending credential sends nothing and so charges nothing, but an
    address over its limit is refused the switch too."""
    app = make_app(store, limit_overrides=limits(address_requests=3))
    browser = peers.browser(app, address(1))
    await browser.create("ada@example.com")
    await browser.create("bob@example.com")
    for _ in range(3):
        switched = await browser.create("ada@example.com")
        assert switched.status_code == 200
        assert switched.json()["sent"] is False
    assert (await browser.create("carol@example.com")).status_code == 200
    cookie = browser.cookie
    assert_rate_limited(await browser.create("bob@example.com"))
    assert browser.cookie == cookie
    assert len(sender.sent) == 3


async def test_verifies_per_address_are_capped_and_a_refusal_costs_nothing(
    make_app: AppFactory, store: str, peers: Peers, sender: RecordingSender
) -> None:
    """Of 10 parallel wrong guesses from one address, 4 are compared; the rest keep their try."""
    app = make_app(store, limit_overrides=limits(address_verifies=4))
    codes: list[str] = []
    browsers: list[Browser] = []
    for i in range(10):
        creator = peers.browser(app, address(i))
        await creator.create(f"user{i}@example.com")
        codes.append(sender.last_code)
        guesser = peers.browser(app, address(200))
        guesser.cookie = creator.cookie
        browsers.append(guesser)

    responses = await asyncio.gather(
        *(b.verify(wrong(c)) for b, c in zip(browsers, codes, strict=True))
    )
    assert sum(r.status_code == 403 for r in responses) == 4
    refused = [i for i, r in enumerate(responses) if r.status_code == 429]
    assert len(refused) == 6
    for i in refused:
        # The refusal handed back a working cookie with every attempt still there.
        elsewhere = Browser(peers.client(app, address(100 + i)))
        elsewhere.cookie = browsers[i].cookie
        assert (await elsewhere.verify(wrong(codes[i]))).json()["attemptsLeft"] == 2


async def test_a_right_code_refused_by_a_limit_hands_back_a_cookie_that_still_takes_it(
    make_app: AppFactory, store: str, peers: Peers, sender: RecordingSender
) -> None:
    """The refused check of a code that would end the flow still files the handed-back
    state's ID (an approval alone files none): from another address, the same code works."""
    app = make_app(store, limit_overrides=limits(address_verifies=1))
    creator = peers.browser(app, address(1))
    await creator.create("ada@example.com")
    code = sender.last_code
    assert (await creator.verify(wrong(code))).status_code == 403
    refused = await creator.verify(code)
    assert_rate_limited(refused)
    elsewhere = Browser(peers.client(app, address(2)))
    elsewhere.cookie = creator.cookie
    assert (await elsewhere.verify(code)).status_code == 200


async def test_the_channel_budget_caps_all_users_together(
    make_app: AppFactory, store: str, peers: Peers, sender: RecordingSender, clock: FakeClock
) -> None:
    """An hourly budget per channel stops everyone's sends on that channel, and only that one."""
    app = make_app(
        store, limit_overrides=LimitOverrides(channel_sends_per_hour={"email": 3, "phone": 1})
    )
    for i in range(3):
        assert (await peers.browser(app, address(i)).create(f"u{i}@example.com")).status_code == 200
    assert_rate_limited(await peers.browser(app, address(9)).create("late@example.com"))
    phone = await peers.browser(app, address(10)).post(
        "/api/otp/create", json={"phone": "+14155550100"}
    )
    assert phone.status_code == 200
    clock.advance(3600)
    assert (await peers.browser(app, address(9)).create("late@example.com")).status_code == 200


async def fail_once(browser: Browser, code: str, clock: FakeClock) -> httpx.Response:
    """One wrong guess, after waiting out the entry's short per-code block."""
    clock.advance(5)
    return await browser.verify(wrong(code))


async def test_consecutive_failures_lock_the_credential_across_new_codes(
    make_app: AppFactory, store: str, peers: Peers, sender: RecordingSender, clock: FakeClock
) -> None:
    """Ten wrong codes over four fresh codes lock the credential for create, resend and verify."""
    app = make_app(store)
    browser = peers.browser(app, address(1))
    failures = 0
    while failures < 10:
        assert (await browser.create(EMAIL)).status_code == 200
        code = sender.last_code
        for _ in range(min(3, 10 - failures)):
            assert (await fail_once(browser, code, clock)).status_code == 403
            failures += 1
    sends = len(sender.sent)
    assert sends == 4

    retry_after = assert_rate_limited(await browser.verify(code))
    assert LOCKOUT_SECONDS - 10 <= retry_after <= LOCKOUT_SECONDS
    clock.advance(30)
    assert_rate_limited(await browser.resend())
    assert_rate_limited(await peers.browser(app, address(2)).create(EMAIL))
    assert len(sender.sent) == sends
    assert (await peers.browser(app, address(2)).create("bob@example.com")).status_code == 200

    clock.advance(LOCKOUT_SECONDS)
    fresh = peers.browser(app, address(3))
    assert (await fresh.create(EMAIL)).status_code == 200
    assert (await fresh.verify(sender.last_code)).status_code == 200


async def test_parallel_wrong_guesses_never_overshoot_the_lockout(
    make_app: AppFactory, store: str, peers: Peers, sender: RecordingSender
) -> None:
    """Of 25 parallel wrong guesses on 25 cookies of one credential, exactly 10 are compared."""
    app = make_app(store, limit_overrides=limits(credential_sends=25))
    browsers, codes = [], []
    for i in range(25):
        browser = peers.browser(app, address(i))
        await browser.create(EMAIL)
        browsers.append(browser)
        codes.append(sender.last_code)
    responses = await asyncio.gather(
        *(b.verify(wrong(c)) for b, c in zip(browsers, codes, strict=True))
    )
    assert sorted(r.status_code for r in responses) == [403] * 10 + [429] * 15
    assert_rate_limited(await browsers[0].verify(codes[0]))


async def test_a_correct_code_resets_the_failure_count(
    make_app: AppFactory, store: str, peers: Peers, sender: RecordingSender, clock: FakeClock
) -> None:
    """Nine failures, a success, then nine more: still unlocked; the tenth in a row locks."""
    app = make_app(store, limit_overrides=limits(credential_sends=20))
    browser = peers.browser(app, address(1))

    async def fail(times: int) -> None:
        while times:
            await browser.create(EMAIL)
            code = sender.last_code
            for _ in range(min(3, times)):
                assert (await fail_once(browser, code, clock)).status_code == 403
                times -= 1

    await fail(9)
    await browser.create(EMAIL)
    assert (await browser.verify(sender.last_code)).status_code == 200
    await fail(9)
    await browser.create(EMAIL)
    code = sender.last_code
    assert (await fail_once(browser, code, clock)).status_code == 403
    assert_rate_limited(await fail_once(browser, code, clock))


async def test_a_spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing(
    make_app: AppFactory, store: str, peers: Peers
) -> None:
    """Only a listed proxy's header picks the address; a client's own entries never do."""
    app = make_app(
        store,
        limit_overrides=limits(address_requests=3),
        trusted_proxies=parse_trusted_proxies("10.0.0.0/8"),
    )

    async def create(peer: str, forwarded_for: str, n: int) -> int:
        headers = {"x-forwarded-for": forwarded_for}
        response = await peers.browser(app, peer).create(f"u{n}@example.com", headers=headers)
        return response.status_code

    # An untrusted peer writing a new X-Forwarded-For each time is still one address.
    assert [await create("203.0.113.5", f"192.0.2.{n}", n) for n in range(4)] == [200] * 3 + [429]
    # Behind the trusted proxy, each client the proxy names has its own allowance...
    assert [await create("10.0.0.1", f"192.0.2.{n}", n) for n in range(4)] == [200] * 4
    # ...and what a client prepends to the proxy's entry is ignored.
    spoofed = [await create("10.0.0.1", f"192.0.2.{n + 50}, 198.51.100.1", n) for n in range(4)]
    assert spoofed == [200] * 3 + [429]


async def test_redis_holds_no_credential_or_address(
    make_app: AppFactory, peers: Peers, redis_url: str
) -> None:
    """Counter keys and values are hashes and numbers: no credential, no client address."""
    app = make_app("redis")
    browser = peers.browser(app, "198.51.100.7")
    await browser.create(EMAIL)
    await browser.verify("000000")
    plain = redis.Redis.from_url(redis_url)
    keys = list(plain.scan_iter(COUNTER_PREFIX + b"*"))
    # Sends, channel, address, network and the network's budget share for the create;
    # failures, the long failure cap, address and network verifies after.
    kinds = len(COUNTER_PREFIX)
    assert sorted(key[kinds : kinds + 2] for key in keys) == [
        b"a:",
        b"b:",
        b"f:",
        b"g:",
        b"n:",
        b"s:",
        b"t:",
        b"v:",
        b"w:",
    ]
    for key in keys:
        stored = b"".join(key + k + v for k, v in plain.hgetall(key).items())
        for secret in (b"ada@", b"example.com", b"198.51.100.7", b"\xc6\x33\x64\x07"):
            assert secret not in stored
        assert plain.pttl(key) > 0
    plain.close()
