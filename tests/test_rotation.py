"""Master-key rotation (SPEC §12, SECURITY.md 59): with or without the previous key, no 5xx.

Instances share one store, as a deployment does: the old instance keeps serving while the
new one starts (a rolling restart), and cookies sealed before the rotation are still in
flight. With the old key in `OTP_MASTER_KEY_PREVIOUS` nothing fails at all; without it,
those cookies answer `OTP:INVALID_COOKIE` and new codes work at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from otpserver.crypto.keyring import KeyRing
from otpserver.http.app import OtpApp, create_app
from otpserver.settings.api import ApiSettings
from otpserver.settings.environment import Settings
from otpserver.stores import MemoryIdStore, MemoryKeyStore
from tests.conftest import ISSUER, MASTER_KEY, PUBLIC_SITE, close_app, test_hooks
from tests.support.api import Browser
from tests.support.fakes import FakeClock, RecordingSender
from tests.support.hooks import HOOKS
from tests.support.syncapp import NO_LIMITS

NEW_KEY = bytes(range(200, 232))
Instance = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def instance(
    store: str, request: pytest.FixtureRequest, clock: FakeClock, sender: RecordingSender
) -> AsyncIterator[Instance]:
    """Makes app instances that share one store (one memory store, or one Redis)."""
    url = "memory://" if store == "memory" else request.getfixturevalue("redis_url")
    shared_ids, shared_keys = MemoryIdStore(clock=clock), MemoryKeyStore(clock=clock)
    apps: list[OtpApp] = []
    clients: list[httpx.AsyncClient] = []

    def make(master_key: bytes, previous: tuple[bytes, ...] = ()) -> httpx.AsyncClient:
        hooks = test_hooks(HOOKS, clock, sender)
        if store == "memory":
            hooks = dataclasses.replace(
                hooks,
                make_id_store=lambda settings: shared_ids,
                make_key_store=lambda settings: shared_keys,
            )
        settings = Settings(
            master_key=master_key,
            store_url=url,
            delivery=PUBLIC_SITE,
            limit_overrides=NO_LIMITS,
            api=ApiSettings(issuer=ISSUER, previous_master_keys=previous),
        )
        app = create_app(settings, hooks, clock=clock)
        apps.append(app)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="https://otp.example.com",
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()
    for app in apps:
        await close_app(app)


async def pending(old: httpx.AsyncClient, count: int, sender: RecordingSender) -> list[Browser]:
    """Browsers holding cookies the old instance sealed, and their codes (in `sender`)."""
    browsers = [Browser(old) for _ in range(count)]
    for i, browser in enumerate(browsers):
        assert (await browser.create(f"user{i}@example.com")).status_code == 200
    return browsers


async def test_rotation_with_the_previous_key_loses_nothing(
    instance: Instance, sender: RecordingSender
) -> None:
    """On either store, cookies sealed before the rotation verify on the new instance, old
    and new instances serve side by side, and no request fails."""
    old = instance(MASTER_KEY)
    browsers = await pending(old, 4, sender)
    codes = [m.code for m in sender.sent]
    new = instance(NEW_KEY, previous=(MASTER_KEY,))
    statuses = []
    for browser, code in zip(browsers, codes, strict=True):
        browser.client = new
        statuses.append((await browser.verify(code)).status_code)
    fresh = Browser(new)
    statuses.append((await fresh.create("new@example.com")).status_code)
    statuses.append((await fresh.verify(sender.last_code)).status_code)
    for client in (old, new):
        side = Browser(client)
        statuses.append((await side.create("side@example.com")).status_code)
        statuses.append((await side.verify(sender.last_code)).status_code)
    assert statuses == [200] * len(statuses)


async def test_rotation_without_the_previous_key_never_answers_5xx(
    instance: Instance, sender: RecordingSender
) -> None:
    """On either store, old cookies answer OTP:INVALID_COOKIE on the new instance, new
    codes work at once on it, and the old instance still running answers no 5xx either."""
    old = instance(MASTER_KEY)
    browsers = await pending(old, 3, sender)
    codes = [m.code for m in sender.sent]
    new = instance(NEW_KEY)
    for browser, code in zip(browsers, codes, strict=True):
        browser.client = new
        refused = await browser.verify(code)
        assert refused.status_code == 400
        assert refused.json()["error"] == "OTP:INVALID_COOKIE"
    statuses = []
    for _ in range(3):
        fresh = Browser(new)
        statuses.append((await fresh.create("new@example.com")).status_code)
        statuses.append((await fresh.verify(sender.last_code)).status_code)
    assert statuses == [200] * len(statuses)
    # The rolling restart is not over: the old instance serves beside the new one.
    for client in (old, new, old):
        side = Browser(client)
        created = await side.create("side@example.com")
        verified = await side.verify(sender.last_code)
        assert created.status_code < 500
        assert verified.status_code < 500


async def test_the_keyring_takes_the_next_slot_then_replaces_a_foreign_one(
    clock: FakeClock,
) -> None:
    """A KEK no configured master key opens makes sealing move to the next epoch's slot;
    if that one is foreign too it is replaced; a previous master key opens what it wrapped."""
    store = MemoryKeyStore(clock=clock)
    old_ring = KeyRing(store, MASTER_KEY, 86400)
    epoch = old_ring.epoch(clock())
    key_id, old_kek = await old_ring.current(clock())
    assert key_id == epoch
    rotated = KeyRing(store, NEW_KEY, 86400, previous=(MASTER_KEY,))
    assert await rotated.current(clock()) == (epoch, old_kek)
    dropped = KeyRing(store, NEW_KEY, 86400)
    moved_id, moved_kek = await dropped.current(clock())
    assert moved_id == epoch + 1
    assert await KeyRing(store, NEW_KEY, 86400).find(epoch + 1, clock()) == moved_kek
    both_foreign = KeyRing(store, bytes(32), 86400)
    replaced_id, replaced_kek = await both_foreign.current(clock())
    assert replaced_id == epoch + 1
    assert replaced_kek != moved_kek
    assert await KeyRing(store, bytes(32), 86400).find(epoch + 1, clock()) == replaced_kek
