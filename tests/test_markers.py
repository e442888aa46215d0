"""The marker contracts on memory and a real Redis, and what is particular to each backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from otpserver.errors import StoreUnavailable
from otpserver.stores import (
    MemoryCounterStore,
    MemoryMarkerStore,
    RedisCounterStore,
    RedisMarkerStore,
    redis_client,
)
from otpserver.stores.base import MarkerAdvance, MarkerClaim, MarkerStore
from otpserver.stores.markers_redis import MARKER_PREFIX
from otpserver.stores.redis import SEQUENCE_KEY
from tests.conftest import TEST_STORE_TIMEOUT_SECONDS as TIMEOUT
from tests.contracts.marker_claims import NOW, MarkerClaimContract, Stores, failures
from tests.contracts.markers import MarkerStoreContract, new_key
from tests.support.fakes import FakeClock
from tests.support.redis_server import BACKENDS, Deployments, emptied_database, plain_client

REDIS_BACKENDS = BACKENDS


class TestMemoryMarkerStore(MarkerStoreContract):
    """The contract on the in-process store, with an injected clock."""

    @pytest.fixture
    async def markers(self) -> AsyncIterator[MarkerStore]:
        """A memory store on a clock this test moves."""
        self.clock = FakeClock()
        store = MemoryMarkerStore(clock=self.clock)
        yield store
        await store.aclose()

    async def pass_time(self, seconds: float) -> None:
        self.clock.advance(seconds)


class TestRedisMarkerStore(MarkerStoreContract):
    """The contract on a real Redis server; time passes by shortening every time to live."""

    @pytest.fixture
    async def markers(self, redis_url: str) -> AsyncIterator[MarkerStore]:
        """A Redis store on an empty database."""
        with plain_client(redis_url) as admin:
            self.admin = admin
            store = RedisMarkerStore(redis_client(redis_url, TIMEOUT), TIMEOUT)
            yield store
            await store.aclose()

    async def pass_time(self, seconds: float) -> None:
        # Redis keeps its own clock; lowering each remaining lifetime is the same as waiting.
        for key in self.admin.scan_iter(match=MARKER_PREFIX + b"*"):
            remaining = int(self.admin.pttl(key))
            if remaining > 0:
                left = remaining - int(seconds * 1000)
                if left > 0:
                    self.admin.pexpire(key, left)
                else:
                    self.admin.delete(key)

    async def test_markers_live_under_their_prefix(self, markers: MarkerStore) -> None:
        """Every marker is one Redis key under `{otp}:mk:` with an expiry set (beside the
        store sequence that a claim advances)."""
        key = new_key()
        await markers.put(key, b"a", 60)
        await markers.advance(new_key(), 3, 60)
        names = [name for name in self.admin.scan_iter() if name != SEQUENCE_KEY]
        assert len(names) == 2
        assert all(name.startswith(MARKER_PREFIX) for name in names)
        assert all(0 < int(self.admin.pttl(name)) <= 60_000 for name in names)


class TestMemoryMarkerClaims(MarkerClaimContract):
    """The claim contract on the in-process markers and counters."""

    @pytest.fixture
    async def stores(self) -> AsyncIterator[Stores]:
        """Memory markers and memory counters, as `memory://` pairs them."""
        markers, counters = MemoryMarkerStore(clock=FakeClock()), MemoryCounterStore()
        yield markers, counters
        await markers.aclose()
        await counters.aclose()


class TestRedisMarkerClaims(MarkerClaimContract):
    """The claim contract with markers and counters in one Redis: one script per claim."""

    @pytest.fixture
    async def stores(self, redis_url: str) -> AsyncIterator[Stores]:
        """Markers and counters on one empty database of the deployment under test."""
        markers = RedisMarkerStore(redis_client(redis_url, TIMEOUT), TIMEOUT)
        counters = RedisCounterStore(redis_client(redis_url, TIMEOUT), TIMEOUT)
        yield markers, counters
        await markers.aclose()
        await counters.aclose()


class TestRedisMarkerClaimsApart(MarkerClaimContract):
    """The claim contract with counters in another database: the steps one call each."""

    @pytest.fixture
    async def stores(self, redis_deployments: Deployments) -> AsyncIterator[Stores]:
        """Markers in database 0 and counters in an emptied database 1 of one Redis."""
        url = redis_deployments.url("redis")
        counters_url = emptied_database(url)
        markers = RedisMarkerStore(redis_client(url, TIMEOUT), TIMEOUT)
        counters = RedisCounterStore(redis_client(counters_url, TIMEOUT), TIMEOUT)
        yield markers, counters
        await markers.aclose()
        await counters.aclose()


def scripts_run(url: str) -> int:
    """How many scripts clients have sent the server so far (EVAL and EVALSHA)."""
    with plain_client(url) as client:
        stats = client.info("commandstats")
    return sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval")
    )


@pytest.mark.redis_backends("redis")
@pytest.mark.parametrize(("counters_db", "scripts"), [("0", 1), ("1", 2)])
async def test_a_marker_claim_on_one_redis_is_one_script(
    redis_url: str, counters_db: str, scripts: int
) -> None:
    """Markers and counters in one Redis: charge, take and reset are one script; counters
    kept elsewhere take the steps one call each (the charge and the advance are scripts)."""
    markers = RedisMarkerStore(redis_client(redis_url, TIMEOUT), TIMEOUT)
    counters = RedisCounterStore(
        redis_client(redis_url.rpartition("/")[0] + "/" + counters_db, TIMEOUT), TIMEOUT
    )
    counter, key = failures(new_key()), new_key()
    try:
        # The first call loads the scripts: EVALSHA, then EVAL.
        await markers.claim(MarkerClaim(take=None, failures=(counter,)), counters, NOW)
        await markers.claim(
            MarkerClaim(take=MarkerAdvance(new_key(), 1, 60), failures=(counter,)), counters, NOW
        )
        before = scripts_run(redis_url)
        claim = MarkerClaim(take=MarkerAdvance(key, 1, 60), failures=(counter,))
        assert (await markers.claim(claim, counters, NOW)).taken
        assert scripts_run(redis_url) - before == scripts
    finally:
        await markers.aclose()
        await counters.aclose()


async def test_memory_markers_are_bounded() -> None:
    """A full memory store refuses new names with 503 rather than grow without bound."""
    store = MemoryMarkerStore(max_markers=2, clock=FakeClock())
    await store.put(new_key(), b"a", 60)
    await store.put(new_key(), b"b", 60)
    with pytest.raises(StoreUnavailable):
        await store.put_if_absent(new_key(), b"c", 60)


async def test_memory_markers_full_of_expired_entries_reclaim_them() -> None:
    """When the store is full of expired markers, a new one reclaims their room."""
    clock = FakeClock()
    store = MemoryMarkerStore(max_markers=2, clock=clock)
    await store.put(new_key(), b"a", 5)
    await store.put(new_key(), b"b", 5)
    clock.advance(3600)
    assert await store.put_if_absent(new_key(), b"c", 60)
    assert len(store) == 1


async def test_memory_markers_give_memory_back_as_time_passes() -> None:
    """Expired markers leave the table through the bounded sweep of ordinary calls."""
    clock = FakeClock()
    store = MemoryMarkerStore(clock=clock)
    for _ in range(100):
        await store.put(new_key(), b"a", 2)
    keeper = new_key()
    await store.put(keeper, b"k", 600)
    for _ in range(10):
        clock.advance(1)
        await store.get(keeper)
    assert len(store) == 1


async def test_memory_markers_never_run_backwards() -> None:
    """A clock that steps back does not revive an expired marker."""
    clock = FakeClock()
    store = MemoryMarkerStore(clock=clock)
    key = new_key()
    await store.put(key, b"a", 10)
    clock.advance(11)
    assert await store.get(key) is None
    clock.advance(-5)
    assert await store.get(key) is None
