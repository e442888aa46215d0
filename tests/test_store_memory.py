"""The memory ID store's layout: invisible to the garbage collector, and lazy about consumed IDs."""

from __future__ import annotations

import gc
import secrets

from otpserver.stores import MemoryIdStore
from tests.support.fakes import FakeClock


def gc_visits() -> int:
    """How many references a full collection follows from every tracked object."""
    return sum(len(gc.get_referents(obj)) for obj in gc.get_objects())


async def test_a_full_collection_never_walks_the_live_ids(clock: FakeClock) -> None:
    """Ten thousand live IDs add almost nothing for the cyclic GC to follow (no pause grows
    with the number of pending sessions)."""
    ids = MemoryIdStore(clock=clock)
    await ids.add(secrets.token_bytes(16), 300)
    gc.collect()
    before = gc_visits()
    for i in range(10_000):
        await ids.add(secrets.token_bytes(16), 1 + i % 300)
    gc.collect()
    assert len(ids) == 10_001
    # One small object per second of expiry at most, whatever the number of IDs.
    assert gc_visits() - before < 2_000


async def test_a_consumed_id_stays_consumed_when_its_second_is_swept(clock: FakeClock) -> None:
    """Sweeping a second skips IDs consumed meanwhile, and spares one filed again for later."""
    ids = MemoryIdStore(clock=clock)
    gone, again, other = (secrets.token_bytes(16) for _ in range(3))
    for list_id in (gone, again, other):
        assert await ids.add(list_id, 10)
    assert await ids.consume(gone)
    assert await ids.consume(again)
    assert await ids.add(again, 100)
    clock.advance(12)
    assert not await ids.consume(secrets.token_bytes(16))  # a call that sweeps the second
    assert len(ids) == 1
    assert not await ids.consume(gone)
    assert not await ids.consume(other)
    assert await ids.consume(again)
