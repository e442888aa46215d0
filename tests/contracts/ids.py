"""The `IdStore` contract as a test class to subclass once per backend.

To check an ID store of your own, subclass `IdStoreContract` in a `test_*.py` file under a
name starting with `Test`, and give it two things: an `ids` fixture that yields a fresh,
empty store, and `pass_time(seconds)`, which makes `seconds` pass for that store (move its
injected clock, or shorten every time to live on a server with its own clock). Every test
below then runs against your store; `tests/test_stores.py` does it for memory and Redis.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from otpserver.stores import MemoryCounterStore
from otpserver.stores.base import Claim, IdStore
from otpserver.stores.counters import Counter

NOW_MS = 1_800_000_000_000


def new_id() -> bytes:
    """A list ID like the core's: 128 random bits."""
    return secrets.token_bytes(16)


class IdStoreContract:
    """What every `IdStore` guarantees; not collected itself (no `Test` prefix)."""

    @pytest.fixture
    async def ids(self) -> AsyncIterator[IdStore]:
        """A fresh, empty store of the backend under test (a subclass provides it)."""
        raise NotImplementedError("subclass IdStoreContract and define `ids`")
        yield  # noqa: PT022 -- an async generator, so subclasses' overrides type-check

    async def pass_time(self, seconds: float) -> None:
        """Make `seconds` pass for the store under test (a subclass provides it)."""
        raise NotImplementedError("subclass IdStoreContract and define `pass_time`")

    async def test_an_added_id_is_consumed_exactly_once(self, ids: IdStore) -> None:
        """`consume` is true once for a live ID and false afterwards."""
        list_id = new_id()
        assert await ids.add(list_id, 60)
        assert await ids.consume(list_id)
        assert not await ids.consume(list_id)

    async def test_unknown_ids_are_not_consumed(self, ids: IdStore) -> None:
        """An ID nobody added cannot be consumed."""
        assert not await ids.consume(new_id())

    async def test_adding_a_live_id_twice_fails(self, ids: IdStore) -> None:
        """`add` never overwrites a live ID."""
        list_id = new_id()
        assert await ids.add(list_id, 60)
        assert not await ids.add(list_id, 60)

    async def test_rotate_moves_liveness_to_the_new_id(self, ids: IdStore) -> None:
        """After a rotation the old ID is dead and the new one is live."""
        old, new = new_id(), new_id()
        await ids.add(old, 60)
        assert await ids.rotate(old, new, 60)
        assert not await ids.consume(old)
        assert await ids.consume(new)

    async def test_rotate_of_a_dead_id_files_nothing(self, ids: IdStore) -> None:
        """A failed rotation leaves the new ID unfiled, so a replay gains no fresh cookie."""
        new = new_id()
        assert not await ids.rotate(new_id(), new, 60)
        assert not await ids.consume(new)

    async def test_fifty_concurrent_consumers_have_one_winner(self, ids: IdStore) -> None:
        """Of 50 concurrent rotations of one ID, exactly one succeeds."""
        old = new_id()
        await ids.add(old, 60)
        results = await asyncio.gather(*(ids.rotate(old, new_id(), 60) for _ in range(50)))
        assert results.count(True) == 1

    async def test_an_id_expires_after_its_time_to_live(self, ids: IdStore) -> None:
        """An ID can be consumed until its time to live has passed, and not after."""
        kept, expired = new_id(), new_id()
        await ids.add(kept, 10)
        await ids.add(expired, 10)
        await self.pass_time(9)
        assert await ids.consume(kept)
        await self.pass_time(3)
        assert not await ids.consume(expired)

    async def test_of_concurrent_claims_of_one_id_one_wins(self, ids: IdStore) -> None:
        """`claim` spends an ID once however many callers race, and charges only the winner."""
        old = new_id()
        await ids.add(old, 60)
        counters = MemoryCounterStore()
        charged = Counter("test", b"t:claims", 100, 60_000, 0, 1)
        claims = [
            Claim(
                order="spend_first", spend=old, file=new_id(), ttl_seconds=60, counters=(charged,)
            )
            for _ in range(20)
        ]
        outcomes = await asyncio.gather(*(ids.claim(c, counters, NOW_MS) for c in claims))
        winners = [c for c, outcome in zip(claims, outcomes, strict=True) if outcome.claimed]
        assert len(winners) == 1
        assert winners[0].file is not None
        assert await ids.consume(winners[0].file)
        spent = await counters.hit([Counter("test", b"t:claims", 2, 60_000, 0, 0)], NOW_MS)
        assert spent.allowed
        assert not (
            await counters.hit([Counter("test", b"t:claims", 1, 60_000, 0, 0)], NOW_MS)
        ).allowed
        await counters.aclose()
