"""The limiter's storage under attack: a long-window failure cap, no counters for requests
that send nothing, and a full table that never blocks verification (SECURITY.md 50, 52)."""

from __future__ import annotations

import pytest
import redis

from otpserver.http.app import OtpApp
from otpserver.otp.credentials import Credential
from otpserver.settings.overrides import LimitOverrides
from tests.conftest import AppFactory
from tests.support.api import Browser
from tests.support.fakes import FakeClock, RecordingSender
from tests.support.peers import Peers, address
from tests.test_limits_api import assert_rate_limited, fail_once

EMAIL = "ada@example.com"


def limits(**numbers: int) -> LimitOverrides:
    return LimitOverrides(numbers=numbers)


async def test_consecutive_failures_are_capped_over_the_long_window(
    make_app: AppFactory, store: str, peers: Peers, sender: RecordingSender, clock: FakeClock
) -> None:
    """Lockouts that end do not restart the count: at the cap the credential stays locked
    past the short lockout, until the host clears it."""
    app = make_app(store, limit_overrides=limits(max_failures=2, lockout_seconds=60, failure_cap=5))
    failures = 0
    while failures < 5:
        clock.advance(61)
        browser = peers.browser(app, address(1))
        assert (await browser.create(EMAIL)).status_code == 200
        code = sender.last_code
        for _ in range(min(2, 5 - failures)):
            assert (await fail_once(browser, code, clock)).status_code == 403
            failures += 1
    clock.advance(3600)
    assert_rate_limited(await peers.browser(app, address(2)).create(EMAIL))
    await app.state.verifications.limiter.forget_failures(Credential("email", EMAIL))
    fresh = peers.browser(app, address(3))
    assert (await fresh.create(EMAIL)).status_code == 200
    assert (await fresh.verify(sender.last_code)).status_code == 200


def counter_count(app_store: str, app: OtpApp, redis_url: str | None) -> int:
    """How many limit counters the app's store holds."""
    if app_store == "memory":
        return len(app.state.counters)
    assert redis_url is not None
    plain = redis.Redis.from_url(redis_url)
    try:
        return sum(1 for _ in plain.scan_iter(b"otp:rl:*"))
    finally:
        plain.close()


async def test_switching_from_fresh_networks_creates_no_counters(
    make_app: AppFactory, store: str, peers: Peers, request: pytest.FixtureRequest
) -> None:
    """Making a pending credential current again sends nothing and files no counter, from
    however many fresh addresses it comes."""
    app = make_app(store)
    redis_url = request.getfixturevalue("redis_url") if store == "redis" else None
    browser = peers.browser(app, address(1))
    await browser.create("ada@example.com")
    await browser.create("bob@example.com")
    before = counter_count(store, app, redis_url)
    for i in range(20):
        roaming = Browser(peers.client(app, f"2001:db8:{i}::1"))
        roaming.cookie = browser.cookie
        switched = await roaming.create("ada@example.com" if i % 2 == 0 else "bob@example.com")
        assert switched.status_code == 200
        assert switched.json()["sent"] is False
        browser.cookie = roaming.cookie
    assert counter_count(store, app, redis_url) == before


async def test_a_full_counter_table_still_verifies_and_still_counts_failures(
    make_app: AppFactory, peers: Peers, sender: RecordingSender, clock: FakeClock
) -> None:
    """When the memory store has no room left, new sends fail closed but verification goes
    on: a right code passes, and wrong codes still lock the credential."""
    app = make_app("memory", memory_max_counters=40, limit_overrides=limits(max_failures=2))
    right = peers.browser(app, address(1))
    await right.create("right@example.com")
    right_code = sender.last_code
    guessed = peers.browser(app, address(2))
    await guessed.create("guessed@example.com")
    guessed_code = sender.last_code
    statuses = [
        (await peers.browser(app, address(10 + i)).create(f"u{i}@example.com")).status_code
        for i in range(20)
    ]
    assert statuses[-1] == 503
    assert len(app.state.counters) <= 40
    for _ in range(2):
        assert (await fail_once(guessed, guessed_code, clock)).status_code == 403
    clock.advance(5)
    assert_rate_limited(await guessed.verify(guessed_code))
    assert (await right.verify(right_code)).status_code == 200
