"""Key events under traffic: KEK rotation, KEK removal, and instances agreeing on one KEK.

The in-process tests run two instances on one real Redis with an injected clock, so hours of
rotations take milliseconds; the last test starts two real servers at the same moment.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest
import redis

from otpserver.crypto import envelope
from otpserver.crypto.keyring import KEY_CACHE_SECONDS
from otpserver.http.app import OtpApp, create_app
from otpserver.settings.environment import Settings
from otpserver.stores.redis import KEY_PREFIX
from otpserver.verification.sealing import b64decode
from tests.conftest import MASTER_KEY, MASTER_KEY_TEXT, PUBLIC_SITE, SIGNING, close_app, test_hooks
from tests.support.api import Browser, wrong
from tests.support.fakes import FakeClock, RecordingSender
from tests.support.hooks import HOOKS
from tests.support.hygiene import assert_no_leaks, captured_records, redis_key_material
from tests.support.process import ServerProcess
from tests.support.remote import RemoteBrowser, Seen, burst
from tests.support.syncapp import NO_LIMITS

ROTATION_SECONDS = 120
TTL_SECONDS = 300
SKEW_SECONDS = 10
"""Instance B's clock runs this far behind instance A's (the key ring allows 60)."""
STEP_SECONDS = 20
VERIFY_AFTER_STEPS = (1, 5, 10, 13, 17)
"""Each session is verified once, at one of these ages (20 s ... 340 s; the TTL is 300 s)."""


def key_id_of(cookie: str | None) -> int:
    assert cookie is not None
    return envelope.peek_key_id(b64decode(cookie))


@dataclass
class Instances:
    """Two apps sharing one Redis, the shared clock, and a client of each."""

    clock: FakeClock
    sender: RecordingSender
    apps: list[OtpApp]
    clients: list[httpx.AsyncClient]
    store: redis.Redis

    def kek_epochs(self) -> list[int]:
        return sorted(int(k[len(KEY_PREFIX) :]) for k in self.store.scan_iter(KEY_PREFIX + b"*"))


@pytest.fixture
async def instances(redis_url: str) -> AsyncIterator[Instances]:
    """Two instances on an empty Redis; B's clock lags A's by SKEW_SECONDS."""
    clock, sender = FakeClock(), RecordingSender()
    # Start just after a rotation, so the first key serves a whole period.
    clock.now = (clock.now // ROTATION_SECONDS + 1) * ROTATION_SECONDS + 1
    clocks: list[Callable[[], float]] = [clock, lambda: clock() - SKEW_SECONDS]
    settings = Settings(
        master_key=MASTER_KEY,
        store_url=redis_url,
        delivery=PUBLIC_SITE,
        api=SIGNING,
        kek_rotation_seconds=ROTATION_SECONDS,
        limit_overrides=NO_LIMITS,
        policy_overrides={"ttl_seconds": TTL_SECONDS},
    )
    apps = [create_app(settings, test_hooks(HOOKS, clock, sender), clock=c) for c in clocks]
    clients = [
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="https://otp.example.com",
        )
        for app in apps
    ]
    store = redis.Redis.from_url(redis_url)
    with captured_records() as records:
        yield Instances(clock, sender, apps, clients, store)
    seen = [m.code for m in sender.sent]
    for client in clients:
        await client.aclose()
    for app in apps:
        await close_app(app)
    assert not [line for line in records.lines if line.startswith(("ERROR", "CRITICAL"))]
    assert_no_leaks(
        records.text, [*seen, MASTER_KEY_TEXT, *redis_key_material(redis_url, MASTER_KEY)]
    )
    store.close()


@dataclass
class Session:
    browser: Browser
    code: str
    created_step: int
    verify_step: int


async def test_rotation_under_traffic_keeps_every_cookie_until_it_expires(
    instances: Instances,
) -> None:
    """Over seven rotations, sessions opened on either instance verify on the other until their
    code expires (never after), failed guesses re-seal under the newest key, and new cookies
    always carry the key of their instance's current period."""
    sessions: list[Session] = []
    key_ids_used: set[int] = set()
    for step in range(42):
        for j in range(2):
            side = (step + j) % 2
            browser = Browser(instances.clients[side])
            response = await browser.create(f"s{step}.{j}@example.com")
            assert response.status_code == 200, response.text
            sealed_with = key_id_of(browser.cookie)
            assert (
                sealed_with == int(instances.apps[side].state.endpoints.clock()) // ROTATION_SECONDS
            )
            key_ids_used.add(sealed_with)
            after = VERIFY_AFTER_STEPS[(2 * step + j) % len(VERIFY_AFTER_STEPS)]
            sessions.append(Session(browser, instances.sender.last_code, step, step + after))

        for session in [s for s in sessions if s.verify_step == step]:
            age = (step - session.created_step) * STEP_SECONDS
            # Carried to the other instance, as a load balancer might.
            other = Browser(instances.clients[(session.created_step + 1) % 2])
            other.cookie = session.browser.cookie
            if age < TTL_SECONDS - SKEW_SECONDS:
                if age == 100:
                    refused = await other.verify(wrong(session.code))
                    assert refused.status_code == 403, refused.text
                    assert key_id_of(other.cookie) >= key_id_of(session.browser.cookie)
                verified = await other.verify(session.code)
                assert verified.status_code == 200, (age, verified.text)
            else:
                expired = await other.verify(session.code)
                assert expired.status_code == 400, (age, expired.text)
                assert expired.json()["error"] == "OTP:EXPIRED"
        instances.clock.advance(STEP_SECONDS)

    assert len(key_ids_used) >= 7
    # One KEK per period, whichever instance asked first; older ones are kept for old cookies.
    epochs = instances.kek_epochs()
    assert epochs == sorted(set(epochs))
    assert set(key_ids_used) <= set(epochs)


async def test_a_removed_kek_fails_its_cookies_cleanly_on_every_instance(
    instances: Instances,
) -> None:
    """Deleting an older KEK and then the current one: their cookies get INVALID_COOKIE on both
    instances (never a 500), other cookies keep working, and both instances adopt one new KEK."""
    a, b = instances.clients
    old = Browser(a)
    await old.create("old@example.com")
    old_code = instances.sender.last_code
    instances.clock.advance(ROTATION_SECONDS + SKEW_SECONDS)
    current = Browser(b)
    await current.create("current@example.com")
    current_code = instances.sender.last_code
    assert key_id_of(current.cookie) == key_id_of(old.cookie) + 1

    instances.store.delete(KEY_PREFIX + str(key_id_of(old.cookie)).encode())
    instances.clock.advance(KEY_CACHE_SECONDS + 1)
    for client in (a, b):
        copy = Browser(client)
        copy.cookie = old.cookie
        response = await copy.verify(old_code)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "OTP:INVALID_COOKIE"
    assert (
        await Browser(a).post("/api/otp/verify", cookie=current.cookie, data={"otp": current_code})
    ).status_code == 200

    doomed = Browser(a)
    await doomed.create("doomed@example.com")
    doomed_code = instances.sender.last_code
    epoch = key_id_of(doomed.cookie)
    instances.store.delete(KEY_PREFIX + str(epoch).encode())
    instances.clock.advance(KEY_CACHE_SECONDS + 1)
    response = await Browser(b).post(
        "/api/otp/verify", cookie=doomed.cookie, data={"otp": doomed_code}
    )
    assert response.json()["error"] == "OTP:INVALID_COOKIE"

    # The period's key is made again, once, and both instances use it.
    fresh = [Browser(a if i % 2 else b) for i in range(6)]
    await asyncio.gather(*(f.create(f"fresh{i}@example.com") for i, f in enumerate(fresh)))
    codes = {m.credential.address: m.code for m in instances.sender.sent}
    assert instances.kek_epochs().count(epoch) == 1
    for i, browser in enumerate(fresh):
        across = Browser(b if i % 2 else a)
        across.cookie = browser.cookie
        assert (await across.verify(codes[f"fresh{i}@example.com"])).status_code == 200


@pytest.mark.e2e
async def test_two_servers_starting_together_on_an_empty_redis_agree_on_one_kek(
    redis_url: str,
) -> None:
    """Two servers (two workers each) launched at once on an empty Redis make one KEK, and
    each opens the other's cookies."""
    addresses = [f"twin{i}@example.com" for i in range(12)]
    env = {
        "OTP_WORKERS": "2",
        "OTP_STORE_URL": redis_url,
        "OTP_MASTER_KEY": MASTER_KEY_TEXT,
        "OTP_TEST_CREDENTIALS": ",".join(f"{a}=123456" for a in addresses),
    }
    servers = [ServerProcess(env), ServerProcess(env)]
    seen = Seen(codes=["123456"])
    try:
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_until_serving()
        browsers = [
            RemoteBrowser(servers[i % 2].url, f"198.51.100.{i}", seen)
            for i in range(len(addresses))
        ]
        created = await burst(b.create(a) for b, a in zip(browsers, addresses, strict=True))
        assert [r.status_code for r in created] == [200] * len(addresses)
        plain = redis.Redis.from_url(redis_url)
        assert len(list(plain.scan_iter(KEY_PREFIX + b"*"))) == 1
        plain.close()
        for i, browser in enumerate(browsers):
            across = RemoteBrowser(servers[(i + 1) % 2].url, browser.address, seen)
            across.cookie = browser.cookie
            assert (await across.verify("123456")).status_code == 200
    finally:
        for server in servers:
            server.stop()
    secrets = [*seen.secrets(), MASTER_KEY_TEXT, *redis_key_material(redis_url, MASTER_KEY)]
    for server in servers:
        assert_no_leaks(server.output(), secrets)


async def test_instances_agree_again_within_a_second_after_the_store_loses_its_keys(
    instances: Instances,
) -> None:
    """After the store loses every key (a restart without persistence), an instance that had
    the old key cached and one that makes the new key seal with the same key a second later."""
    a, b = instances.clients
    instances.clock.advance(ROTATION_SECONDS / 2)  # both clocks well inside one period
    before = Browser(a)
    await before.create("before@example.com")  # A now holds the period's key in its cache
    instances.store.flushdb()
    instances.clock.advance(2)
    on_b, on_a = Browser(b), Browser(a)
    await on_b.create("on-b@example.com")  # B finds no key and makes a new one
    code_b = instances.sender.last_code
    await on_a.create("on-a@example.com")
    code_a = instances.sender.last_code
    assert key_id_of(on_a.cookie) == key_id_of(on_b.cookie)
    assert (
        await Browser(b).post("/api/otp/verify", cookie=on_a.cookie, data={"otp": code_a})
    ).status_code == 200
    assert (
        await Browser(a).post("/api/otp/verify", cookie=on_b.cookie, data={"otp": code_b})
    ).status_code == 200
    # The cookie from before the loss lost its ID with the store: refused, never a 500.
    response = await Browser(b).post(
        "/api/otp/verify", cookie=before.cookie, data={"otp": "000000"}
    )
    assert response.json()["error"] == "OTP:INVALID_COOKIE"
