"""Keys and stores: rotation, revocation, agreement, wrapping at rest, outages, no secrets."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import redis

from otpserver.crypto import envelope
from otpserver.crypto.keyring import KEY_CACHE_SECONDS
from otpserver.http.app import OtpApp
from otpserver.stores.redis import KEY_PREFIX
from otpserver.verification.sealing import b64decode
from tests.conftest import MASTER_KEY, AppFactory
from tests.support.api import Browser, wrong
from tests.support.fakes import FakeClock, RecordingSender
from tests.support.redis_server import RedisServer

DAY = 86_400


def key_id_of(cookie: str | None) -> int:
    assert cookie is not None
    return envelope.peek_key_id(b64decode(cookie))


async def test_rotation_keeps_old_cookies_and_seals_new_ones_with_the_new_key(
    make_app: AppFactory,
    store: str,
    client_for: Callable[[OtpApp], httpx.AsyncClient],
    sender: RecordingSender,
    clock: FakeClock,
) -> None:
    """Across a rotation, an older cookie still verifies and new cookies use the new key."""
    clock.now = (clock.now // DAY + 1) * DAY - 60  # one minute before the next rotation
    client = client_for(make_app(store))
    before = Browser(client)
    await before.create("ada@example.com")
    old_key, code = key_id_of(before.cookie), sender.last_code
    clock.advance(120)
    after = Browser(client)
    await after.create("bob@example.com")
    assert key_id_of(after.cookie) == old_key + 1
    assert (await before.verify(code)).status_code == 200


async def test_a_removed_key_gives_invalid_cookie(
    make_app: AppFactory,
    store: str,
    client_for: Callable[[OtpApp], httpx.AsyncClient],
    sender: RecordingSender,
    clock: FakeClock,
) -> None:
    """Deleting a KEK kills its cookies cleanly (400, never 500) within the cache time."""
    app = make_app(store)
    browser = Browser(client_for(app))
    await browser.create()
    await app.state.key_store.delete(key_id_of(browser.cookie))
    clock.advance(KEY_CACHE_SECONDS + 1)
    response = await browser.verify(sender.last_code)
    assert response.status_code == 400
    assert response.json()["error"] == "OTP:INVALID_COOKIE"


async def test_instances_on_an_empty_redis_agree_on_one_key(
    make_app: AppFactory,
    client_for: Callable[[OtpApp], httpx.AsyncClient],
    sender: RecordingSender,
    redis_url: str,
) -> None:
    """Two instances starting on an empty Redis share one KEK and open each other's cookies."""
    first, second = client_for(make_app("redis")), client_for(make_app("redis"))
    browsers = [Browser(first if i % 2 else second) for i in range(10)]
    await asyncio.gather(*(b.create(f"user{i}@example.com") for i, b in enumerate(browsers)))
    plain = redis.Redis.from_url(redis_url)
    assert len(plain.keys(KEY_PREFIX + b"*")) == 1
    plain.close()
    crossing = Browser(first)
    crossing.cookie = browsers[0].cookie
    code = next(m.code for m in sender.sent if m.credential.address == "user0@example.com")
    assert (await crossing.verify(code)).status_code == 200


async def test_keks_are_wrapped_at_rest_and_no_secret_is_stored(
    make_app: AppFactory,
    client_for: Callable[[OtpApp], httpx.AsyncClient],
    sender: RecordingSender,
    redis_url: str,
) -> None:
    """Every Redis value is checked: KEKs only wrapped by the master key; no code, no credential."""
    app = make_app("redis")
    browser = Browser(client_for(app))
    await browser.create("ada.lovelace@example.com")
    await browser.verify(wrong(sender.last_code))
    key_id, kek = await app.state.keyring.current(app.state.endpoints.clock())
    plain = redis.Redis.from_url(redis_url)
    values = {key: plain.dump(key) or b"" for key in plain.scan_iter()}
    wrapped = plain.get(KEY_PREFIX + str(key_id).encode())
    assert isinstance(wrapped, bytes)
    plain.close()
    assert wrapped is not None
    assert len(wrapped) == envelope.WRAPPED_KEY_BYTES
    assert envelope.unwrap_key(MASTER_KEY, wrapped) == kek
    for key, value in values.items():
        for secret in (kek, MASTER_KEY, b"ada.lovelace", sender.last_code.encode()):
            assert secret not in key
            assert secret not in value


async def test_store_outage_fails_closed_and_recovers(
    make_app: AppFactory,
    client_for: Callable[[OtpApp], httpx.AsyncClient],
    sender: RecordingSender,
    clock: FakeClock,
) -> None:
    """With Redis down every route answers 503 and sends nothing; after restart service resumes."""
    server = RedisServer()
    server.start()
    try:
        client = client_for(make_app(store_url=server.url, store_timeout_seconds=0.3))
        browser = Browser(client)
        await browser.create()
        code, cookie = sender.last_code, browser.cookie
        clock.advance(30)
        server.stop()
        sent_before = len(sender.sent)
        for response in (
            await Browser(client).create("bob@example.com"),
            await browser.resend(),
            await browser.verify(code),
        ):
            assert response.status_code == 503
            assert response.json()["error"] == "STORE:UNAVAILABLE"
        assert len(sender.sent) == sent_before
        assert browser.cookie == cookie
        server.start()
        # The restarted Redis lost every ID (no persistence), so the old cookie is dead, and
        # the key ring re-creates its key: a new session works end to end.
        clock.advance(KEY_CACHE_SECONDS + 1)
        fresh = Browser(client)
        assert (await fresh.create("carol@example.com")).status_code == 200
        assert (await fresh.verify(sender.last_code)).status_code == 200
        assert (await browser.verify(code)).json()["error"] == "OTP:INVALID_COOKIE"
    finally:
        server.close()
