"""The counter-store contract, one class run against memory and a real Redis by inheritance."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otpserver.errors import StoreUnavailable
from otpserver.stores import MemoryCounterStore, RedisCounterStore, redis_client
from otpserver.stores.base import CounterStore
from otpserver.stores.counters import Counter, Decision, Window, charged, decide
from otpserver.stores.redis import COUNTER_PREFIX
from tests.support.redis_server import BACKENDS, RedisServer, plain_client

REDIS_BACKENDS = BACKENDS

NOW = 1_800_000_000_000
MINUTE = 60_000


def counter(
    key: bytes = b"t:a", limit: int = 3, window_ms: int = MINUTE, lock_ms: int = 0, cost: int = 1
) -> Counter:
    return Counter("test", key, limit, window_ms, lock_ms, cost)


StoreFactory = Callable[[], CounterStore]

# Three counters with different shapes; an operation hits some of them, moves time or resets.
SHAPES = ((2, 1000, 0), (2, 1000, 5000), (1, 700, 0))
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(
            st.just("hit"),
            st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1)), min_size=1, max_size=3).map(
                lambda picks: tuple(dict(picks).items())
            ),
        ),
        st.tuples(st.just("wait"), st.integers(1, 3000)),
        st.tuples(st.just("reset"), st.integers(0, 2)),
    ),
    max_size=25,
)


async def replay(store: CounterStore, operations: list[tuple[str, object]]) -> None:
    """Run `operations` on `store` and on the pure rules; every decision must agree."""
    prefix = uuid.uuid4().hex.encode()
    model: dict[bytes, Window] = {}
    now = NOW
    for kind, argument in operations:
        if kind == "wait":
            assert isinstance(argument, int)
            now += argument
        elif kind == "reset":
            assert isinstance(argument, int)
            key = prefix + bytes([argument])
            model.pop(key, None)
            await store.reset([key])
        else:
            assert isinstance(argument, tuple)
            counters = [
                Counter("t", prefix + bytes([i]), *SHAPES[i], cost=cost) for i, cost in argument
            ]
            expected = decide(counters, [model.get(c.key) for c in counters], now)
            if expected.allowed:
                for c in counters:
                    if c.cost:
                        model[c.key] = charged(c, model.get(c.key), now)
            assert await store.hit(counters, now) == expected
    await store.aclose()


class CounterStoreContract:
    """What every `CounterStore` must do; subclasses provide `counters` and `make_store`."""

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(operations=OPERATIONS)
    def test_agrees_with_the_pure_rules(
        self, make_store: StoreFactory, operations: list[tuple[str, object]]
    ) -> None:
        """Any sequence of hits, waits and resets decides exactly as `limits.decide` says."""
        asyncio.run(replay(make_store(), operations))

    async def test_allows_up_to_the_limit_then_refuses_until_the_window_ends(
        self, counters: CounterStore
    ) -> None:
        """Three hits pass a limit of three; the fourth waits out the first hit's window."""
        for offset in (0, 10, 20):
            assert (await counters.hit([counter()], NOW + offset)).allowed
        assert await counters.hit([counter()], NOW + 30) == Decision(False, MINUTE - 30, (0,))
        assert (await counters.hit([counter()], NOW + MINUTE)).allowed

    async def test_charges_all_counters_or_none(self, counters: CounterStore) -> None:
        """A request refused by one counter leaves the others uncharged."""
        full, roomy = counter(b"t:full", limit=1), counter(b"t:roomy", limit=2)
        assert (await counters.hit([full], NOW)).allowed
        for _ in range(3):
            decision = await counters.hit([roomy, full], NOW)
            assert decision == Decision(False, MINUTE, (1,))
        assert (await counters.hit([roomy], NOW)).allowed
        assert (await counters.hit([roomy], NOW)).allowed
        assert not (await counters.hit([roomy], NOW)).allowed

    async def test_waits_for_the_latest_refusing_counter(self, counters: CounterStore) -> None:
        """Retry-After covers every counter that said no."""
        early, late = counter(b"t:early", limit=1), counter(b"t:late", limit=1)
        await counters.hit([early], NOW)
        await counters.hit([late], NOW + 5000)
        assert await counters.hit([early, late], NOW + 6000) == Decision(
            False, MINUTE - 1000, (0, 1)
        )

    async def test_check_only_counters_are_not_charged(self, counters: CounterStore) -> None:
        """A zero-cost counter refuses when full but never fills up by itself."""
        checked = counter(limit=1, cost=0)
        for _ in range(5):
            assert (await counters.hit([checked], NOW)).allowed
        await counters.hit([counter(limit=1)], NOW)
        assert not (await counters.hit([checked], NOW)).allowed

    async def test_a_locking_counter_locks_from_the_hit_that_fills_it(
        self, counters: CounterStore
    ) -> None:
        """The limit-th hit starts the lock; nothing passes until it ends, then all is new."""
        locking = counter(limit=2, window_ms=10 * MINUTE, lock_ms=15 * MINUTE)
        assert (await counters.hit([locking], NOW)).allowed
        assert (await counters.hit([locking], NOW + MINUTE)).allowed
        refused = await counters.hit([locking], NOW + 2 * MINUTE)
        assert refused == Decision(False, 14 * MINUTE, (0,))
        assert not (await counters.hit([locking], NOW + 16 * MINUTE - 1)).allowed
        assert (await counters.hit([locking], NOW + 16 * MINUTE)).allowed

    async def test_reset_forgets_a_count(self, counters: CounterStore) -> None:
        """After `reset` a full counter has its whole allowance again."""
        for _ in range(3):
            await counters.hit([counter()], NOW)
        await counters.reset([counter().key, b"t:never-used"])
        for _ in range(3):
            assert (await counters.hit([counter()], NOW)).allowed
        assert not (await counters.hit([counter()], NOW)).allowed

    async def test_a_parallel_burst_never_passes_a_limit_by_one(
        self, counters: CounterStore
    ) -> None:
        """Of 100 concurrent hits on a limit of 37, exactly 37 are allowed."""
        # 100: redis-py's default pool refuses a 101st concurrent connection.
        decisions = await asyncio.gather(
            *(counters.hit([counter(limit=37)], NOW) for _ in range(100))
        )
        assert sum(d.allowed for d in decisions) == 37

    async def test_a_burst_over_shared_counters_is_exact_for_each(
        self, counters: CounterStore
    ) -> None:
        """Requests sharing one counter and each owning another: the shared one caps them all."""
        shared = counter(b"t:shared", limit=25)
        decisions = await asyncio.gather(
            *(
                counters.hit([counter(f"t:own{i}".encode(), limit=1), shared], NOW)
                for i in range(100)
            )
        )
        allowed = {i for i, d in enumerate(decisions) if d.allowed}
        assert len(allowed) == 25
        # Exactly the allowed requests charged their own counter; the refused charged nothing.
        owned = await asyncio.gather(
            *(counters.hit([counter(f"t:own{i}".encode(), limit=1)], NOW) for i in range(100))
        )
        assert {i for i, d in enumerate(owned) if not d.allowed} == allowed


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

    async def test_time_never_runs_backwards(self) -> None:
        """A late caller holding an older instant is judged at the latest one seen."""
        store = MemoryCounterStore()
        await store.hit([counter(limit=1, window_ms=1000)], NOW + 5000)
        assert (await store.hit([counter(limit=1, window_ms=1000)], NOW)).allowed is False


CONTRACT_TIMEOUT_SECONDS = 5.0
"""Generous: a burst opens a hundred connections at once, and on a loaded machine that once
took over a second. Timeouts themselves are tested with a short one, below."""


class TestRedisCounterStore(CounterStoreContract):
    """The contract on a real Redis server, shared by every instance of the app."""

    @pytest.fixture
    async def counters(self, redis_url: str) -> AsyncIterator[CounterStore]:
        """A Redis store on an empty database."""
        store = RedisCounterStore(redis_client(redis_url, CONTRACT_TIMEOUT_SECONDS))
        yield store
        await store.aclose()

    @pytest.fixture
    def make_store(self, redis_url: str) -> StoreFactory:
        """Redis stores on one database (each replay uses keys of its own)."""
        return lambda: RedisCounterStore(redis_client(redis_url, CONTRACT_TIMEOUT_SECONDS))

    async def test_instances_sharing_redis_share_counts(self, redis_url: str) -> None:
        """Two clients (two app instances) racing on one counter still stop at the limit."""
        stores = [
            RedisCounterStore(redis_client(redis_url, CONTRACT_TIMEOUT_SECONDS)) for _ in range(2)
        ]
        decisions = await asyncio.gather(
            *(stores[i % 2].hit([counter(limit=11)], NOW) for i in range(100))
        )
        assert sum(d.allowed for d in decisions) == 11
        for store in stores:
            await store.aclose()

    async def test_keys_expire_by_themselves(self, counters: CounterStore, redis_url: str) -> None:
        """Every counter key carries a TTL: the window's rest, or the lock's length."""
        await counters.hit([counter(b"t:w", window_ms=MINUTE)], NOW)
        await counters.hit([counter(b"t:l", limit=1, lock_ms=5 * MINUTE)], NOW)
        with plain_client(redis_url) as plain:
            assert 0 < plain.pttl(COUNTER_PREFIX + b"t:w") <= MINUTE
            assert MINUTE < plain.pttl(COUNTER_PREFIX + b"t:l") <= 5 * MINUTE
            assert all(plain.pttl(key) > 0 for key in plain.scan_iter(COUNTER_PREFIX + b"*"))

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
