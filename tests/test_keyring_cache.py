"""The key ring's cache: a cookie naming a key that does not exist yet leaves nothing behind."""

from __future__ import annotations

from otpserver.crypto.keyring import KeyRing
from otpserver.stores.memory import MemoryKeyStore
from tests.conftest import MASTER_KEY
from tests.support.fakes import FakeClock

DAY = 86_400


async def test_a_miss_for_the_next_key_does_not_hide_it_after_the_rotation() -> None:
    """A junk cookie naming the next key, just before a rotation, does not make this instance
    refuse that key once another instance has made it."""
    clock = FakeClock()
    clock.now = (clock.now // DAY + 1) * DAY - 1  # one second before the rotation
    store = MemoryKeyStore(clock=clock)
    poisoned, other = KeyRing(store, MASTER_KEY, DAY), KeyRing(store, MASTER_KEY, DAY)
    next_key = poisoned.epoch(clock.now) + 1
    assert await poisoned.find(next_key, clock.now) is None  # the junk cookie's lookup
    clock.advance(2)
    key_id, kek = await other.current(clock.now)  # another instance seals with the new key
    assert key_id == next_key
    assert await poisoned.find(next_key, clock.now) == kek


async def test_a_found_key_is_still_cached() -> None:
    """Keys that exist are still remembered, so opening a cookie costs no store call each time."""
    clock = FakeClock()
    store = MemoryKeyStore(clock=clock)
    ring = KeyRing(store, MASTER_KEY, DAY)
    key_id, kek = await ring.current(clock.now)
    await store.delete(key_id)
    assert await ring.find(key_id, clock.now + 1) == kek
