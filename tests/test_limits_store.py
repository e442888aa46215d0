"""The counter-store contract (`tests/contracts/counters.py`) on memory and a real Redis,
and what is particular to each backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from otpserver.errors import StoreUnavailable
from otpserver.stores import MemoryCounterStore, RedisCounterStore, redis_client
from otpserver.stores.base import CounterStore
from otpserver.stores.counters import ALWAYS, IF_ROOM
from otpserver.stores.redis import COUNTER_PREFIX
from tests.contracts.counters import NOW, CounterStoreContract, StoreFactory, counter
from tests.support.redis_server import BACKENDS, RedisServer, plain_client

REDIS_BACKENDS = BACKENDS

MINUTE = 60_000


class TestMemoryCounterStore(CounterStoreContract):
    """The contract on the in-process store."""

    @pytest.fixture
    async def counters(self) -> AsyncIterator[CounterStore]:
        """A fresh memory store."""
        store = MemoryCounterStore()
        yield store
        await store.aclose()

    @pytest.fixture
    def make_store(self) -> StoreFactory:
        """Fresh memory stores."""
        return MemoryCounterStore

    async def test_expired_counters_give_their_memory_back(self) -> None:
        """Counts whose windows ended are swept on later calls, without a full scan."""
        store = MemoryCounterStore()
        for i in range(100):
            await store.hit([counter(f"t:{i}".encode(), window_ms=1000)], NOW)
        assert len(store) == 100
        for step in range(1, 10):
            await store.hit([counter(b"t:late", window_ms=MINUTE)], NOW + step * 1000)
        assert len(store) == 1

    async def test_a_full_store_fails_closed(self) -> None:
        """Past `max_counters` live keys a new key is refused with 503, never forgotten."""
        store = MemoryCounterStore(max_counters=2)
        await store.hit([counter(b"t:1")], NOW)
        await store.hit([counter(b"t:2")], NOW)
        with pytest.raises(StoreUnavailable):
            await store.hit([counter(b"t:3")], NOW)
        assert (await store.hit([counter(b"t:1")], NOW)).allowed
        # Memory comes back once the expired windows' bucket second has passed.
        assert (await store.hit([counter(b"t:3")], NOW + MINUTE + 1000)).allowed

    async def test_a_full_store_keeps_failure_counts_and_skips_optional_ones(self) -> None:
        """Past the bound, an `ALWAYS` counter is still filed and an `IF_ROOM` one skipped,
        so the request goes on; a `REFUSE` counter still fails closed."""
        store = MemoryCounterStore(max_counters=1)
        await store.hit([counter(b"t:1")], NOW)
        failures = counter(b"t:f", limit=2)._replace(when_full=ALWAYS)
        optional = counter(b"t:o", limit=1)._replace(when_full=IF_ROOM)
        assert (await store.hit([failures, optional], NOW)).allowed
        assert (await store.hit([failures, optional], NOW)).allowed  # `t:o` was never filed
        assert not (await store.hit([failures], NOW)).allowed  # `t:f` was, twice
        with pytest.raises(StoreUnavailable):
            await store.hit([optional, counter(b"t:2")], NOW)

    async def test_time_never_runs_backwards(self) -> None:
        """A late caller holding an older instant is judged at the latest one seen."""
        store = MemoryCounterStore()
        await store.hit([counter(limit=1, window_ms=1000)], NOW + 5000)
        assert (await store.hit([counter(limit=1, window_ms=1000)], NOW)).allowed is False


CONTRACT_TIMEOUT_SECONDS = 5.0
"""Generous: a burst opens a hundred connections at once, and on a loaded machine that once
took over a second. Timeouts themselves are tested with a short one, below."""


def contract_store(redis_url: str) -> RedisCounterStore:
    """A Redis store whose whole-call deadline, not only its connect timeout, is generous."""
    client = redis_client(redis_url, CONTRACT_TIMEOUT_SECONDS)
    return RedisCounterStore(client, CONTRACT_TIMEOUT_SECONDS)


class TestRedisCounterStore(CounterStoreContract):
    """The contract on a real Redis server, shared by every instance of the app."""

    @pytest.fixture
    async def counters(self, redis_url: str) -> AsyncIterator[CounterStore]:
        """A Redis store on an empty database."""
        store = contract_store(redis_url)
        yield store
        await store.aclose()

    @pytest.fixture
    def make_store(self, redis_url: str) -> StoreFactory:
        """Redis stores on one database (each replay uses keys of its own)."""
        return lambda: contract_store(redis_url)

    async def test_instances_sharing_redis_share_counts(self, redis_url: str) -> None:
        """Two clients (two app instances) racing on one counter still stop at the limit."""
        stores = [contract_store(redis_url) for _ in range(2)]
        try:
            decisions = await asyncio.gather(
                *(stores[i % 2].hit([counter(limit=11)], NOW) for i in range(100))
            )
        finally:
            # Closed even when the test fails, so no socket outlives it into the next test.
            for store in stores:
                await store.aclose()
        assert sum(d.allowed for d in decisions) == 11

    async def test_keys_expire_by_themselves(self, counters: CounterStore, redis_url: str) -> None:
        """Every counter key carries a TTL: the window's rest, or the lock's length."""
        await counters.hit([counter(b"t:w", window_ms=MINUTE)], NOW)
        await counters.hit([counter(b"t:l", limit=1, lock_ms=5 * MINUTE)], NOW)
        with plain_client(redis_url) as plain:
            assert 0 < plain.pttl(COUNTER_PREFIX + b"t:w") <= MINUTE
            assert MINUTE < plain.pttl(COUNTER_PREFIX + b"t:l") <= 5 * MINUTE
            names = list(plain.scan_iter(COUNTER_PREFIX + b"*"))
            assert len(names) == 2
            assert all(plain.pttl(key) > 0 for key in names)

    async def test_an_outage_fails_closed_and_recovers(self) -> None:
        """With Redis down a hit raises `StoreUnavailable`; after a restart it works again."""
        server = RedisServer()
        server.start()
        store = RedisCounterStore(redis_client(server.url, 0.3), 0.3)
        try:
            assert (await store.hit([counter()], NOW)).allowed
            server.stop()
            with pytest.raises(StoreUnavailable):
                await store.hit([counter()], NOW)
            with pytest.raises(StoreUnavailable):
                await store.reset([counter().key])
            server.start()
            assert (await store.hit([counter()], NOW)).allowed
        finally:
            await store.aclose()
            server.close()
