"""Redis deployments failing as they do in production: failover, lost writes, restores, eviction.

Real servers throughout: a Sentinel set-up whose primary is killed by PID, a replica cut
off by SIGSTOP, a snapshot restored by restarting from its RDB file, a primary demoted to a
replica. Nothing here waits for time to pass; the loops wait for a failover to finish.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest

from otpserver.errors import ConfigError, StoreUnavailable
from otpserver.settings.environment import Settings
from otpserver.settings.store import RedisOptions
from otpserver.stores import RedisIdStore, RedisKeyStore, redis_client
from otpserver.stores.redis import (
    _REVOKED_SEQUENCE,
    _STAMP,
    COUNTER_PREFIX,
    ID_PREFIX,
    KEY_PREFIX,
    SEQUENCE_KEY,
    STAMP_STEPS_PER_MS,
    STAMPED_FLOOR,
    TAG,
    check_store,
)
from tests.conftest import MASTER_KEY
from tests.support.redis_server import (
    Deployments,
    RedisServer,
    SentinelServers,
    free_port,
    plain_client,
    wait_until,
)

FAILOVER_SECONDS = 30
"""Generous: Sentinel notices in one second and promotes in a few, on a loaded machine."""


def new_id() -> bytes:
    return secrets.token_bytes(16)


async def eventually(call: Callable[[], Awaitable[bool]], seconds: float) -> bool:
    """The first answer `call` gives once the store answers again (503s meanwhile)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await call()
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


@pytest.fixture
def sentinel(redis_deployments: Deployments) -> Iterator[SentinelServers]:
    """The session's Sentinel set-up, empty; whatever a test kills or freezes is back, as a
    synced replica, afterwards."""
    redis_deployments.url("sentinel")
    servers = redis_deployments.sentinel
    assert servers is not None
    yield servers
    for server in servers.data_servers():
        if server.running:
            server.resume()
        else:
            server.start()
    wait_until(servers.replicated, FAILOVER_SECONDS, "the old primary to rejoin as a replica")


def replica_of(servers: SentinelServers) -> RedisServer:
    primary = servers.current_primary()
    return next(s for s in servers.data_servers() if s is not primary)


def sync(server: RedisServer) -> None:
    client = server.client()
    client.execute_command("WAIT", 1, 5000)  # type: ignore[no-untyped-call]
    client.close()


async def test_a_sentinel_failover_is_followed_without_a_restart(
    sentinel: SentinelServers,
) -> None:
    """With the primary killed by PID, the same store finds the promoted replica by itself
    within seconds: no restart, no stuck 503."""
    ids = RedisIdStore(redis_client(sentinel.url, 0.5), 0.5)
    try:
        assert await ids.add(new_id(), 60)
        old = sentinel.current_primary()
        os.kill(old.pid, 9)
        old.stop()
        assert await eventually(lambda: ids.add(new_id(), 60), FAILOVER_SECONDS)
        assert sentinel.master()[1] != old.port
    finally:
        await ids.aclose()


async def test_with_wait_replicas_a_step_no_replica_confirmed_fails_closed(
    sentinel: SentinelServers,
) -> None:
    """`OTP_REDIS_WAIT_REPLICAS=1`: while the replica is cut off a consume answers 503 (it
    was never granted, so a failover cannot replay a granted one); once it is back, the
    same store works again."""
    ids = RedisIdStore(redis_client(sentinel.url, 0.5, wait_replicas=1), 0.5)
    try:
        assert await ids.add(first := new_id(), 60)
        assert await ids.consume(first)
        replica = replica_of(sentinel)
        replica.pause()
        cut = new_id()
        assert await ids.add(cut, 60)
        with pytest.raises(StoreUnavailable):
            await ids.consume(cut)
        replica.resume()
        later = new_id()
        assert await ids.add(later, 60)
        assert await ids.consume(later)
    finally:
        await ids.aclose()


async def test_a_failover_to_a_lagging_replica_never_brings_a_consumed_id_back(
    sentinel: SentinelServers, caplog: pytest.LogCaptureFixture
) -> None:
    """Without waiting for replicas, a consume the replica missed is lost in the failover;
    the store sequence shows it, and the ID it would bring back is revoked, never accepted."""
    ids = RedisIdStore(redis_client(sentinel.url, 0.5), 0.5)
    try:
        spent = new_id()
        assert await ids.add(spent, 600)
        assert await ids.consume(new_id()) is False  # advances the sequence
        primary, replica = sentinel.current_primary(), replica_of(sentinel)
        sync(primary)
        # Cut replication: pointed at a port where nothing listens, the replica keeps its
        # data and hears nothing more (a frozen one would still read what the kernel kept).
        cut = replica.client()
        cut.replicaof("127.0.0.1", free_port())
        cut.close()
        assert await ids.consume(spent)  # only the primary knows
        os.kill(primary.pid, 9)
        primary.stop()
        assert await eventually(lambda: ids.consume(spent), FAILOVER_SECONDS) is False
        assert "went back in time" in caplog.text
    finally:
        await ids.aclose()


async def test_a_restored_snapshot_is_caught_and_what_it_revived_is_revoked() -> None:
    """A restart from an older snapshot brings a consumed ID back; the instance that saw the
    later sequence refuses, revokes every pending ID and key, then serves again."""
    server = RedisServer()
    server.start()
    ids = RedisIdStore(redis_client(server.url, 0.5), 0.5)
    keys = RedisKeyStore(redis_client(server.url, 0.5), 0.5)
    try:
        spent = new_id()
        assert await ids.add(spent, 600)
        await keys.get_or_create(1, b"k" * 40, 600)
        assert await ids.consume(new_id()) is False
        snapshot = server.client()
        snapshot.save()
        snapshot.close()
        assert await ids.consume(spent)
        server.stop()
        server.start()  # from the snapshot, where `spent` is live
        with pytest.raises(StoreUnavailable):
            await ids.consume(spent)
        assert await eventually(lambda: ids.consume(spent), 10) is False
        assert await keys.get(1) is None
        fresh = new_id()
        assert await ids.add(fresh, 60)
        assert await ids.consume(fresh)
    finally:
        await ids.aclose()
        await keys.aclose()
        server.close()


async def test_a_restart_without_persistence_revokes_nothing_minted_after_it() -> None:
    """Two instances, a store restarted empty: whichever instance's step comes first, the
    other takes the new start for an emptied store, not one gone back, so a code sent
    through one right after the restart still verifies through the other. Before stamps,
    an instance that missed the sequence's 1 revoked everything, fresh sign-ins included."""
    server = RedisServer()
    server.start()
    first = RedisIdStore(redis_client(server.url, 0.5), 0.5)
    second = RedisIdStore(redis_client(server.url, 0.5), 0.5)
    try:
        for store in (first, second, first, second):
            assert await store.consume(new_id()) is False  # steps: each floor goes up
        server.stop()
        server.start()  # nothing saved: an empty store
        with plain_client(server.url) as plain:
            plain.incr(SEQUENCE_KEY)  # a third instance's step, the first after the restart
        fresh = new_id()
        assert await first.add(fresh, 600)
        assert await second.consume(new_id()) is False
        assert await second.consume(fresh)
        later = new_id()
        assert await second.add(later, 600)
        assert await first.consume(later)
    finally:
        await first.aclose()
        await second.aclose()
        server.close()


def test_a_stamp_lands_above_every_value_of_the_store_before() -> None:
    """A store stamped, stepped, emptied and stamped again: the new stamp is above the old
    store's last value (the clock moved on), and a revocation lands on the clock's next
    stamp, not far past it, so a restart after a revocation still stamps above it."""
    server = RedisServer()
    server.start()
    try:
        with plain_client(server.url) as plain:
            stamp = plain.register_script(_STAMP.source.decode())
            old = int(stamp(keys=[SEQUENCE_KEY]))
            assert old >= STAMPED_FLOOR
            assert int(stamp(keys=[SEQUENCE_KEY])) == old  # stamped once
            for _ in range(1000):
                last = int(plain.incr(SEQUENCE_KEY))
            plain.flushall()
            time.sleep(0.002)
            assert int(stamp(keys=[SEQUENCE_KEY])) > last
            revoked = plain.register_script(_REVOKED_SEQUENCE.source.decode())
            moved = int(revoked(keys=[SEQUENCE_KEY]))
            seconds, micros = plain.time()
            now_ms = seconds * 1000 + micros // 1000
            assert moved <= (now_ms + 1) * STAMP_STEPS_PER_MS
            plain.flushall()
            time.sleep(0.002)
            assert int(stamp(keys=[SEQUENCE_KEY])) > moved
    finally:
        server.close()


async def test_an_instance_stamps_the_sequence_it_finds_unstamped() -> None:
    """The first step on an empty store finds the sequence at 1 and stamps it before it
    answers, so a snapshot or a replica taken from then on carries the stamp."""
    server = RedisServer()
    server.start()
    ids = RedisIdStore(redis_client(server.url, 0.5), 0.5)
    try:
        assert await ids.consume(new_id()) is False
        with plain_client(server.url) as plain:
            assert int(plain.get(SEQUENCE_KEY)) >= STAMPED_FLOOR
    finally:
        await ids.aclose()
        server.close()


def test_revoke_pending_is_the_manual_step_after_a_restore() -> None:
    """Instances restarted on a restored store remember nothing to compare with; `python -m
    otpserver keys revoke-pending` then makes every pending ID and key invalid, counters
    untouched."""
    server = RedisServer()
    server.start()
    plain = server.client()
    try:
        plain.set(ID_PREFIX + b"pending", b"1", px=600_000)
        plain.set(KEY_PREFIX + b"7", b"w" * 40)
        plain.set(COUNTER_PREFIX + b"f:x", b"1")
        clean = {k: v for k, v in os.environ.items() if not k.startswith("OTP_")}
        done = subprocess.run(
            [sys.executable, "-m", "otpserver", "keys", "revoke-pending"],
            env={**clean, "OTP_ENV": "development", "OTP_STORE_URL": server.url},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "revoked 1 pending ID(s) and 1 key(s)" in done.stdout
        assert plain.get(ID_PREFIX + b"pending") is None
        assert plain.get(KEY_PREFIX + b"7") is None
        assert plain.get(COUNTER_PREFIX + b"f:x") == b"1"
        assert int(plain.get(SEQUENCE_KEY) or 0) >= 1 << 40
    finally:
        plain.close()
        server.close()


@pytest.mark.parametrize("url_suffix", ["", "?client=redis-py"])
async def test_a_demoted_primary_answering_readonly_drops_the_connections(
    url_suffix: str,
) -> None:
    """A primary turned replica answers READONLY: the client closes its connections to it
    (so the next call connects afresh, e.g. to the name's new address) instead of holding
    them and answering 503 for ever."""
    primary, other = RedisServer(), RedisServer()
    primary.start()
    other.start()
    ids = RedisIdStore(redis_client(primary.url + url_suffix, 1.0), 1.0)
    admin = primary.client()
    try:
        assert await ids.add(new_id(), 60)
        assert len(admin.client_list()) == 2
        admin.replicaof("127.0.0.1", other.port)
        with pytest.raises(StoreUnavailable):
            await ids.add(new_id(), 60)
        # Only this admin connection is left (besides its new link to its primary, flag M),
        # once the loop has run the closes and the server has read them.
        deadline = time.monotonic() + 5
        while len([c for c in admin.client_list() if "M" not in c["flags"]]) != 1:
            assert time.monotonic() < deadline, "the connections to the replica stayed open"
            await asyncio.sleep(0.05)
    finally:
        admin.close()
        await ids.aclose()
        primary.close()
        other.close()


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl", "allkeys-random"])
async def test_an_eviction_policy_that_may_drop_counters_stops_production(
    redis_url: str, policy: str
) -> None:
    """Production refuses a maxmemory-policy that may evict a failure counter, naming
    OTP_STORE_URL and the way out; development and OTP_REDIS_ALLOW_EVICTION start."""
    production = Settings(store_url=redis_url, master_key=MASTER_KEY)
    with plain_client(redis_url) as plain:
        plain.config_set("maxmemory-policy", policy)
        try:
            with pytest.raises(ConfigError) as caught:
                await check_store(production)
            assert "OTP_STORE_URL" in str(caught.value)
            assert "OTP_REDIS_ALLOW_EVICTION" in str(caught.value)
            await check_store(Settings(store_url=redis_url, env="development"))
            await check_store(
                Settings(
                    store_url=redis_url,
                    master_key=MASTER_KEY,
                    redis=RedisOptions(allow_eviction=True),
                )
            )
        finally:
            plain.config_set("maxmemory-policy", "noeviction")
        await check_store(production)


def test_every_key_shares_one_cluster_slot(redis_deployments: Deployments) -> None:
    """IDs, keys, counters, markers and the sequence hash to one slot, so every script's
    keys are on one cluster node."""
    with plain_client(redis_deployments.url("cluster")) as cluster:
        slots = {
            cluster.keyslot(name)
            for name in (ID_PREFIX + b"a", KEY_PREFIX + b"1", COUNTER_PREFIX + b"f", SEQUENCE_KEY)
        }
        assert slots == {cluster.keyslot(TAG)}
