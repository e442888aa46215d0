"""The ID and key contracts (`tests/contracts/`) on memory and a real Redis, and what is
particular to each backend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis

from otpserver.errors import StoreUnavailable
from otpserver.stores import (
    MemoryIdStore,
    MemoryKeyStore,
    RedisIdStore,
    RedisKeyStore,
    redis_client,
)
from otpserver.stores.base import IdStore, KeyStore
from otpserver.stores.clients import FastClient
from otpserver.stores.connections import Argument, pack
from otpserver.stores.redis import ID_PREFIX, KEY_PREFIX
from tests.contracts.ids import IdStoreContract, new_id
from tests.contracts.keys import KeyStoreContract
from tests.support.fakes import FakeClock
from tests.support.redis_server import BACKENDS, RedisServer, plain_client

REDIS_BACKENDS = BACKENDS
"""The Redis tests below run on every deployment, except those of the fast client's own
connection handling (marked)."""


class TestMemoryIdStore(IdStoreContract):
    """The ID contract on the in-process store, with an injected clock."""

    @pytest.fixture
    async def ids(self, clock: FakeClock) -> AsyncIterator[IdStore]:
        """A memory store on the test's clock."""
        self.clock = clock
        store = MemoryIdStore(clock=clock)
        yield store
        await store.aclose()

    async def pass_time(self, seconds: float) -> None:
        self.clock.advance(seconds)


class TestMemoryKeyStore(KeyStoreContract):
    """The key contract on the in-process store, with an injected clock."""

    @pytest.fixture
    async def keys(self, clock: FakeClock) -> AsyncIterator[KeyStore]:
        """A memory store on the test's clock."""
        self.clock = clock
        store = MemoryKeyStore(clock=clock)
        yield store
        await store.aclose()

    async def pass_time(self, seconds: float) -> None:
        self.clock.advance(seconds)


def shorten_lifetimes(admin: Any, prefix: bytes, seconds: float) -> None:
    """What `seconds` passing does to keys under `prefix`: Redis keeps its own clock, so
    lowering each remaining lifetime is the same as waiting."""
    for key in admin.scan_iter(match=prefix + b"*"):
        remaining = int(admin.pttl(key))
        if remaining > 0:
            left = remaining - int(seconds * 1000)
            if left > 0:
                admin.pexpire(key, left)
            else:
                admin.delete(key)


class TestRedisIdStore(IdStoreContract):
    """The ID contract on a real Redis server."""

    @pytest.fixture
    async def ids(self, redis_url: str) -> AsyncIterator[IdStore]:
        """A Redis store on an empty database."""
        with plain_client(redis_url) as admin:
            self.admin = admin
            store = RedisIdStore(redis_client(redis_url, 1.0))
            yield store
            await store.aclose()

    async def pass_time(self, seconds: float) -> None:
        shorten_lifetimes(self.admin, ID_PREFIX, seconds)


class TestRedisKeyStore(KeyStoreContract):
    """The key contract on a real Redis server."""

    @pytest.fixture
    async def keys(self, redis_url: str) -> AsyncIterator[KeyStore]:
        """A Redis store on an empty database."""
        with plain_client(redis_url) as admin:
            self.admin = admin
            store = RedisKeyStore(redis_client(redis_url, 1.0))
            yield store
            await store.aclose()

    async def pass_time(self, seconds: float) -> None:
        shorten_lifetimes(self.admin, KEY_PREFIX, seconds)


async def test_memory_sweep_reclaims_without_full_scans(clock: FakeClock) -> None:
    """Expired IDs are dropped a few buckets per call, so the table shrinks as time passes."""
    ids = MemoryIdStore(clock=clock)
    for _ in range(1000):
        await ids.add(new_id(), 5)
    live = new_id()
    await ids.add(live, 100)
    assert len(ids) == 1001
    clock.advance(7)
    for _ in range(3):
        await ids.consume(new_id())
    assert len(ids) == 1
    assert await ids.consume(live)


async def test_memory_sweep_catches_up_after_idle_spells(clock: FakeClock) -> None:
    """After hours without traffic, one call jumps to the oldest bucket instead of walking."""
    ids = MemoryIdStore(clock=clock)
    await ids.add(new_id(), 5)
    clock.advance(7200)
    await ids.consume(new_id())
    assert len(ids) == 0


async def test_memory_store_is_bounded(clock: FakeClock) -> None:
    """Past `max_ids` live IDs the memory store refuses (fail closed) instead of growing."""
    ids = MemoryIdStore(max_ids=3, clock=clock)
    for _ in range(3):
        await ids.add(new_id(), 60)
    with pytest.raises(StoreUnavailable):
        await ids.add(new_id(), 60)
    clock.advance(61)
    assert await ids.add(new_id(), 60)


async def test_redis_ids_carry_their_ttl(redis_url: str) -> None:
    """Redis IDs are stored with a millisecond TTL matching the cookie's lifetime."""
    ids = RedisIdStore(redis_client(redis_url, 1.0))
    list_id = new_id()
    await ids.add(list_id, 120)
    with plain_client(redis_url) as plain:
        ttl = plain.pttl(ID_PREFIX + list_id)
    await ids.aclose()
    assert 119_000 < ttl <= 120_000


async def test_redis_outage_is_store_unavailable() -> None:
    """Every operation against a stopped Redis raises StoreUnavailable within the timeout."""
    server = RedisServer()
    server.start()
    ids = RedisIdStore(redis_client(server.url, 0.3), 0.3)
    keys = RedisKeyStore(redis_client(server.url, 0.3), 0.3)
    assert await ids.add(new_id(), 60)
    server.stop()
    try:
        for call in (ids.add(new_id(), 60), ids.consume(new_id()), keys.get(1)):
            with pytest.raises(StoreUnavailable):
                await call
        server.start()
        assert await ids.add(new_id(), 60)
    finally:
        await ids.aclose()
        await keys.aclose()
        server.close()


async def test_a_frozen_redis_times_out_and_no_late_reply_answers_a_later_call() -> None:
    """A store that hangs (SIGSTOP) makes each call raise StoreUnavailable within the
    timeout; once thawed, Redis answers the calls it had queued, and none of those late
    replies may be taken for the answer to a later call on the same connection."""
    timeout = 0.3
    server = RedisServer()
    server.start()
    # One connection at most, so every call after the freeze reuses the frozen one's slot.
    client = redis_client(server.url, timeout, max_connections=1)
    ids, keys = RedisIdStore(client, timeout), RedisKeyStore(client, timeout)
    kept, spent = new_id(), new_id()
    assert await ids.add(kept, 60)
    assert await ids.add(spent, 60)
    try:
        server.pause()
        for call in (keys.get_or_create(7, b"k" * 40, 60), ids.add(new_id(), 60)):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await call
            assert time.monotonic() - started < timeout + 0.5
        server.resume()
        assert await ids.consume(spent)
        assert not await ids.consume(spent)
        assert await keys.get(8) is None
        assert await ids.consume(kept)
    finally:
        server.resume()
        await ids.aclose()
        server.close()


async def test_the_first_call_after_a_redis_restart_succeeds_on_a_pooled_connection() -> None:
    """A pooled connection that a restart left dead is retried once on a fresh one, so the
    first request after Redis comes back is not refused."""
    server = RedisServer()
    server.start()
    ids = RedisIdStore(redis_client(server.url, 1.0), 1.0)
    try:
        assert await ids.add(new_id(), 60)
        server.stop()
        server.start()
        assert await ids.add(new_id(), 60)
    finally:
        await ids.aclose()
        server.close()


async def test_scripts_run_after_the_server_forgets_them(redis_url: str) -> None:
    """Scripts go by hash (EVALSHA); a server whose script cache was flushed (a restart,
    `SCRIPT FLUSH`) gets the source once more instead of answering NOSCRIPT."""
    ids = RedisIdStore(redis_client(redis_url, 1.0))
    old, new = new_id(), new_id()
    try:
        assert await ids.add(old, 60)
        with plain_client(redis_url) as plain:
            plain.script_flush()
        assert await ids.rotate(old, new, 60)
        assert not await ids.rotate(old, new_id(), 60)
    finally:
        await ids.aclose()


async def test_calls_that_give_up_waiting_for_a_connection_leave_the_pool_whole() -> None:
    """With every connection stuck on a frozen Redis, the calls queued for one time out
    too; after the thaw the pool serves again, none of its connections lost."""
    timeout = 0.3
    server = RedisServer()
    server.start()
    client = redis_client(server.url, timeout, max_connections=2)
    ids = RedisIdStore(client, timeout)
    try:
        assert await ids.add(new_id(), 60)
        server.pause()
        outcomes = await asyncio.gather(
            *(ids.add(new_id(), 60) for _ in range(6)), return_exceptions=True
        )
        assert all(isinstance(outcome, StoreUnavailable) for outcome in outcomes)
        server.resume()
        assert all(await asyncio.gather(*(ids.add(new_id(), 60) for _ in range(6))))
        plain = redis.Redis.from_url(server.url)
        clients = plain.client_list()
        plain.close()
        assert len(clients) <= 3  # this check's own connection and the pool's two
    finally:
        server.resume()
        await ids.aclose()
        server.close()


@pytest.mark.redis_backends("redis")
async def test_closing_a_client_closes_a_connection_busy_at_the_time(redis_url: str) -> None:
    """`aclose` closes idle connections at once and a busy one when its reply is in."""
    client = redis_client(redis_url, 2.0)
    plain = redis.Redis.from_url(redis_url)
    try:
        before = len(plain.client_list())
        waiting = asyncio.ensure_future(client.execute(b"BLPOP", b"otp:test:none", 2))
        # Wait for the connection to appear rather than for a fixed time: on a busy machine
        # connecting can take longer than any guess.
        for _ in range(250):
            if len(plain.client_list()) > before:
                break
            await asyncio.sleep(0.02)
        assert len(plain.client_list()) == before + 1
        await client.aclose()
        assert await waiting is None
        # The server forgets a closed connection once it has read the close.
        deadline = time.monotonic() + 2
        while len(plain.client_list()) != before:
            assert time.monotonic() < deadline, "the busy connection stayed open"
            await asyncio.sleep(0.02)
    finally:
        plain.close()


@pytest.mark.redis_backends("redis", "redis-py", "valkey", "cluster")
async def test_bursts_beyond_the_connection_pool_wait_instead_of_failing(redis_url: str) -> None:
    """Three hundred concurrent calls on one client (a pool of 128) all succeed."""
    # A generous deadline: the point is waiting for a connection, not speed (on a busy
    # machine 300 calls through 128 connections once took over 2 s).
    ids = RedisIdStore(redis_client(redis_url, 10.0), 10.0)
    try:
        results = await asyncio.gather(*(ids.add(new_id(), 60) for _ in range(300)))
    finally:
        await ids.aclose()
    assert all(results)


@pytest.mark.parametrize(
    "command",
    [
        ("EVALSHA", "a" * 40, 3, b"otp:id:\x00\xff", b"otp:rl:k", "otp:rl:\u00e9", 600000, 0, -5),
        ("SET", b"otp:id:x", b"1", "PX", 1500, "NX"),
        (b"DEL", b"otp:rl:f:00", b"otp:rl:s:ff"),
        ("INCRBYFLOAT", "k", 0.5),
    ],
)
def test_hiredis_packing_writes_the_bytes_redis_py_would(command: tuple[Argument, ...]) -> None:
    """The C packer is a drop-in: byte for byte what redis-py's own asyncio packer sends."""
    from redis.asyncio.connection import Connection

    assert pack(command) == b"".join(bytes(part) for part in Connection().pack_command(*command))


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://127.0.0.1:6379/0", "Connection"),
        ("rediss://127.0.0.1:6380/0", "SSLConnection"),
        ("unix:///run/redis.sock", "UnixDomainSocketConnection"),
    ],
)
def test_every_kind_of_redis_url_gets_its_own_connection(url: str, kind: str) -> None:
    """TCP, TLS and Unix-socket URLs each connect their own way, and two clients of one
    URL name the same server (the fused limit scripts rely on it)."""
    client = redis_client(url, 1.0)
    assert isinstance(client, FastClient)
    assert client.connection_class.__name__ == kind
    assert client.server == redis_client(url, 1.0).server
    other_database = url.replace("/0", "/1") if url.endswith("/0") else f"{url}?db=1"
    assert client.server != redis_client(other_database, 1.0).server


def test_the_redis_client_parses_replies_with_hiredis() -> None:
    """`redis[hiredis]` is a dependency: its C reply parser takes about a tenth off the CPU
    time of a request on Redis (docs/BENCHMARKS.md); a lost extra would go unnoticed."""
    import redis.utils

    assert redis.utils.HIREDIS_AVAILABLE
