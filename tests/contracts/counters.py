"""The `CounterStore` contract as a test class to subclass once per backend.

To check a counter store of your own, subclass `CounterStoreContract` in a `test_*.py`
file under a name starting with `Test`, and give it a `counters` fixture that yields a
fresh, empty store and a `make_store` fixture that returns a function making such stores
(the property test needs a new one per example). Every test below then runs against your
store; `tests/test_limits_store.py` does it for memory and Redis. Instants are passed in
(`now_ms`), so no time needs to pass.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otpserver.stores.base import CounterStore
from otpserver.stores.counters import Counter, Decision, Window, charged, decide

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
    """What every `CounterStore` must do; subclasses provide `counters` and `make_store`.

    Not collected itself (no `Test` prefix)."""

    @pytest.fixture
    async def counters(self) -> AsyncIterator[CounterStore]:
        """A fresh, empty store of the backend under test (a subclass provides it)."""
        raise NotImplementedError("subclass CounterStoreContract and define `counters`")
        yield  # noqa: PT022 -- an async generator, so subclasses' overrides type-check

    @pytest.fixture
    def make_store(self) -> StoreFactory:
        """Makes fresh stores of the backend under test (a subclass provides it)."""
        raise NotImplementedError("subclass CounterStoreContract and define `make_store`")

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
