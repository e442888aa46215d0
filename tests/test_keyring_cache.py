"""The key ring's cache: a cookie naming a key that does not exist yet leaves nothing behind,
and a key the store made again after losing it is found within a second."""

from __future__ import annotations

import asyncio

import pytest

from otpserver.crypto.keyring import KeyRing
from otpserver.errors import InvalidCookie
from otpserver.stores.memory import MemoryKeyStore
from otpserver.verification.sealing import PendingSealer
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


class CountingKeyStore(MemoryKeyStore):
    """A memory key store that counts its `get` calls and, like a network store, lets other
    tasks run while one is under way."""

    gets = 0

    async def get(self, key_id: int) -> bytes | None:
        self.gets += 1
        await asyncio.sleep(0)
        return await super().get(key_id)


PURPOSE = b"cookie"


def tampered(sealed: str) -> str:
    """`sealed` with one character changed (not the last, which may carry spare bits): still
    the one canonical spelling of some bytes, so it reaches the key, and no longer opens."""
    return sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]


async def test_a_key_the_store_made_again_opens_on_an_instance_that_cached_the_old_one() -> None:
    """The store loses its keys (a restart without persistence): an instance that sealed
    before keeps its copy of the old key, another instance makes a new one under the same
    id and seals with it. The first opens that cookie as soon as its copy is a second old,
    not only when the 30-second cache runs out."""
    clock = FakeClock()
    store = MemoryKeyStore(clock=clock)
    earlier, later = KeyRing(store, MASTER_KEY, DAY), KeyRing(store, MASTER_KEY, DAY)
    key_id, old = await earlier.current(clock.now)
    await store.delete(key_id)
    clock.advance(2)
    sealed = await PendingSealer(later).seal_bytes(b"state", clock.now, purpose=PURPOSE)
    assert (await later.current(clock.now))[1] != old
    opened = await PendingSealer(earlier).open_bytes(sealed, clock.now, purpose=PURPOSE)
    assert opened == b"state"


async def test_values_that_never_open_ask_the_store_at_most_once_a_second() -> None:
    """Junk naming a real key (or a tampered cookie) fails to open with the cached key; the
    store is asked again at most once a second per key, however many arrive."""
    clock = FakeClock()
    store = CountingKeyStore(clock=clock)
    ring = KeyRing(store, MASTER_KEY, DAY)
    sealer = PendingSealer(ring)
    sealed = await sealer.seal_bytes(b"state", clock.now, purpose=PURPOSE)
    clock.advance(2)
    junk = tampered(sealed)
    at_once = await asyncio.gather(
        *(sealer.open_bytes(junk, clock.now, purpose=PURPOSE) for _ in range(10)),
        return_exceptions=True,
    )
    assert all(isinstance(outcome, InvalidCookie) for outcome in at_once), at_once
    for _ in range(10):
        with pytest.raises(InvalidCookie):
            await sealer.open_bytes(junk, clock.now, purpose=PURPOSE)
    assert store.gets == 1
    clock.advance(1)
    with pytest.raises(InvalidCookie):
        await sealer.open_bytes(junk, clock.now, purpose=PURPOSE)
    assert store.gets == 2
    assert await sealer.open_bytes(sealed, clock.now, purpose=PURPOSE) == b"state"


async def sealed_then_key_deleted() -> tuple[FakeClock, PendingSealer, str]:
    """A value sealed, then its key deleted from the store (revoked) two seconds ago, while
    the instance that sealed it still holds the key in its cache."""
    clock = FakeClock()
    store = CountingKeyStore(clock=clock)
    ring = KeyRing(store, MASTER_KEY, DAY)
    sealer = PendingSealer(ring)
    sealed = await sealer.seal_bytes(b"state", clock.now, purpose=PURPOSE)
    key_id, _ = await ring.current(clock.now)
    await store.delete(key_id)
    clock.advance(2)
    return clock, sealer, sealed


async def test_a_key_gone_from_the_store_is_forgotten_once_a_value_fails() -> None:
    """A deleted (revoked) key stops opening at once on the first value it fails to open,
    instead of when the cache runs out."""
    clock, sealer, sealed = await sealed_then_key_deleted()
    with pytest.raises(InvalidCookie):
        await sealer.open_bytes(tampered(sealed), clock.now, purpose=PURPOSE)
    with pytest.raises(InvalidCookie):
        await sealer.open_bytes(sealed, clock.now, purpose=PURPOSE)


async def test_values_failing_at_once_after_a_deletion_are_each_refused() -> None:
    """Several requests whose values fail together, after their key was deleted, each get
    the one opaque refusal: the key is forgotten once, whichever asked first."""
    clock, sealer, sealed = await sealed_then_key_deleted()
    outcomes = await asyncio.gather(
        *(sealer.open_bytes(tampered(sealed), clock.now, purpose=PURPOSE) for _ in range(5)),
        return_exceptions=True,
    )
    assert all(isinstance(outcome, InvalidCookie) for outcome in outcomes), outcomes
