"""The gate contract (`tests.contracts.gates`) on every store pairing a deployment may use:
memory, IDs, markers and counters in one Redis (one script per step), and counters kept in
another database (the gate charged in a call of its own, first)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from otpserver.stores import (
    MemoryCounterStore,
    MemoryIdStore,
    RedisCounterStore,
    RedisIdStore,
    redis_client,
)
from otpserver.stores.markers_memory import MemoryMarkerStore
from otpserver.stores.markers_redis import RedisMarkerStore
from tests.conftest import TEST_STORE_TIMEOUT_SECONDS as TIMEOUT
from tests.contracts.gates import NOW, GateContract, Stores
from tests.support.redis_server import BACKENDS, Deployments, emptied_database

REDIS_BACKENDS = BACKENDS


class TestMemoryGates(GateContract):
    """The gate on the in-process stores, as `memory://` pairs them."""

    @pytest.fixture
    async def stores(self) -> AsyncIterator[Stores]:
        """Memory IDs, markers and counters on one clock."""
        ids = MemoryIdStore(clock=lambda: NOW / 1000)
        markers = MemoryMarkerStore(clock=lambda: NOW / 1000)
        counters = MemoryCounterStore()
        yield ids, markers, counters
        for store in (ids, markers, counters):
            await store.aclose()


class TestRedisGates(GateContract):
    """The gate with everything in one Redis: the gate rides in the step's one script."""

    @pytest.fixture
    async def stores(self, redis_url: str) -> AsyncIterator[Stores]:
        """IDs, markers and counters on one empty database of the deployment under test."""
        ids = RedisIdStore(redis_client(redis_url, TIMEOUT), TIMEOUT)
        markers = RedisMarkerStore(redis_client(redis_url, TIMEOUT), TIMEOUT)
        counters = RedisCounterStore(redis_client(redis_url, TIMEOUT), TIMEOUT)
        yield ids, markers, counters
        for store in (ids, markers, counters):
            await store.aclose()


class TestRedisGatesApart(GateContract):
    """The gate with counters in another database: charged alone, before the rest."""

    @pytest.fixture
    async def stores(self, redis_deployments: Deployments) -> AsyncIterator[Stores]:
        """IDs and markers in database 0, counters in an emptied database 1 of one Redis."""
        url = redis_deployments.url("redis")
        counters_url = emptied_database(url)
        ids = RedisIdStore(redis_client(url, TIMEOUT), TIMEOUT)
        markers = RedisMarkerStore(redis_client(url, TIMEOUT), TIMEOUT)
        counters = RedisCounterStore(redis_client(counters_url, TIMEOUT), TIMEOUT)
        yield ids, markers, counters
        for store in (ids, markers, counters):
            await store.aclose()
