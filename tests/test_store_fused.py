"""Charge and change a cookie's ID in one Redis script: the outcome of the two steps in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from otpserver.stores import MemoryCounterStore, RedisCounterStore, RedisIdStore, redis_client
from otpserver.stores.counters import Counter, Decision
from tests.conftest import AppFactory
from tests.support.redis_server import BACKENDS

REDIS_BACKENDS = BACKENDS

NOW = 1_800_000_000_000
MINUTE = 60_000


def counter(key: bytes = b"t:f", limit: int = 2, cost: int = 1) -> Counter:
    return Counter("test", key, limit, MINUTE, 0, cost)


@pytest.fixture
async def stores(redis_url: str) -> AsyncIterator[tuple[RedisIdStore, RedisCounterStore]]:
    """An ID store and a counter store on one Redis, as the shipped hooks make them."""
    ids = RedisIdStore(redis_client(redis_url, 1.0))
    counters = RedisCounterStore(redis_client(redis_url, 1.0))
    yield ids, counters
    await ids.aclose()
    await counters.aclose()


async def test_a_won_claim_rotates_and_charges(
    stores: tuple[RedisIdStore, RedisCounterStore],
) -> None:
    """The old ID is spent, the new one filed, and the counters charged as `hit` would."""
    ids, counters = stores
    assert await ids.add(b"o" * 16, 60)
    assert await ids.rotate_and_hit(b"o" * 16, b"n" * 16, 60, [counter()], NOW) == Decision(True)
    assert not await ids.consume(b"o" * 16)
    assert await ids.consume(b"n" * 16)
    assert (await counters.hit([counter()], NOW)).allowed
    assert await counters.hit([counter()], NOW) == Decision(False, MINUTE, (0,))


async def test_a_lost_claim_charges_nothing_and_files_nothing(
    stores: tuple[RedisIdStore, RedisCounterStore],
) -> None:
    """An unknown (replayed) ID gives None; no counter moved and the new ID was not filed."""
    ids, counters = stores
    assert await ids.rotate_and_hit(b"x" * 16, b"n" * 16, 60, [counter(limit=1)], NOW) is None
    assert not await ids.consume(b"n" * 16)
    assert (await counters.hit([counter(limit=1)], NOW)).allowed


async def test_a_refused_charge_still_rotates(
    stores: tuple[RedisIdStore, RedisCounterStore],
) -> None:
    """Claimed but over a limit: the refusal comes back, and only the new ID is live."""
    ids, counters = stores
    await counters.hit([counter(limit=1)], NOW)
    assert await ids.add(b"o" * 16, 60)
    decision = await ids.rotate_and_hit(b"o" * 16, b"n" * 16, 60, [counter(limit=1)], NOW + 5)
    assert decision == Decision(False, MINUTE - 5, (0,))
    assert not await ids.consume(b"o" * 16)
    assert await ids.consume(b"n" * 16)


async def test_parallel_claims_of_one_id_charge_once(
    stores: tuple[RedisIdStore, RedisCounterStore],
) -> None:
    """Of 30 concurrent claims of one ID, one wins and only its charge counts."""
    ids, counters = stores
    assert await ids.add(b"o" * 16, 60)
    results = await asyncio.gather(
        *(
            ids.rotate_and_hit(b"o" * 16, bytes([i]) * 16, 60, [counter(limit=2)], NOW)
            for i in range(30)
        )
    )
    assert sum(r is not None for r in results) == 1
    assert (await counters.hit([counter(limit=2)], NOW)).allowed
    assert not (await counters.hit([counter(limit=2)], NOW)).allowed


async def test_a_charge_first_files_the_new_id_only_when_allowed(
    stores: tuple[RedisIdStore, RedisCounterStore],
) -> None:
    """Allowed: the ID is added (or rotated); refused: nothing moves, the old ID stays live."""
    ids, _ = stores
    assert await ids.hit_and_file([counter(limit=2)], NOW, None, b"a" * 16, 60) == (
        Decision(True),
        True,
    )
    assert await ids.hit_and_file([counter(limit=2)], NOW, b"a" * 16, b"b" * 16, 60) == (
        Decision(True),
        True,
    )
    assert not await ids.consume(b"a" * 16)
    refused = await ids.hit_and_file([counter(limit=2)], NOW, b"b" * 16, b"c" * 16, 60)
    assert refused == (Decision(False, MINUTE, (0,)), False)
    assert not await ids.consume(b"c" * 16)
    assert await ids.consume(b"b" * 16)


async def test_a_charge_first_keeps_its_charge_when_the_rotation_loses(
    stores: tuple[RedisIdStore, RedisCounterStore],
) -> None:
    """A replayed cookie's ID cannot be rotated: not filed, but the charge stands (as in order)."""
    ids, counters = stores
    lost = await ids.hit_and_file([counter(limit=1)], NOW, b"x" * 16, b"n" * 16, 60)
    assert lost == (Decision(True), False)
    assert not await ids.consume(b"n" * 16)
    assert not (await counters.hit([counter(limit=1)], NOW)).allowed


@pytest.mark.redis_backends("redis", "redis-py", "valkey")
async def test_fusion_needs_the_same_server_and_database(
    stores: tuple[RedisIdStore, RedisCounterStore], redis_url: str
) -> None:
    """Counters elsewhere (another database, or in memory) keep the two-step path."""
    ids, counters = stores
    assert ids.charges_with(counters)
    other = RedisCounterStore(redis_client(redis_url.rpartition("/")[0] + "/1", 1.0))
    assert not ids.charges_with(other)
    await other.aclose()
    assert not ids.charges_with(MemoryCounterStore())


@pytest.mark.parametrize(("store", "fused"), [("memory", False), ("redis", True)])
def test_the_app_fuses_only_a_shared_redis(make_app: AppFactory, store: str, fused: bool) -> None:
    """The shipped hooks on one Redis verify in one script; the memory store needs none."""
    endpoints = make_app(store).state.endpoints
    assert (endpoints.limiter.claims is endpoints.ids) is fused
