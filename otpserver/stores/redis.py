"""Redis stores: several processes and machines share IDs and keys through one Redis.

Each operation is one round trip and atomic on the server (`SET NX PX`, `DEL`, or a short
Lua script). Every backend failure, including a timeout, becomes `StoreUnavailable`, so the
server fails closed with 503 and recovers by itself: redis-py reconnects on the next call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import hiredis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.typing import EncodableT

from otpserver.errors import StoreUnavailable
from otpserver.limits import Counter, Decision

T = TypeVar("T")

ID_PREFIX = b"otp:id:"
KEY_PREFIX = b"otp:kek:"
COUNTER_PREFIX = b"otp:rl:"

# DEL returns how many keys it removed: exactly one concurrent caller sees 1, and only that
# caller gets the new ID filed.
_ROTATE = """
if redis.call('DEL', KEYS[1]) == 1 then
  if redis.call('SET', KEYS[2], '1', 'PX', ARGV[1], 'NX') then return 1 end
end
return 0
"""

# Every instance offers its own candidate; the first write wins and all read the winner.
_GET_OR_CREATE = """
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
"""


# `otpserver.limits.decide` then `charged`, in one step no other client can interleave with,
# as a Lua function over the keys after the first `k0` and the arguments from `ARGV[a0]`:
# the caller's clock in ms (so every instance and the tests share one notion of "now"), then
# limit, window, lock and cost per key. The TTL is the window's remaining length, so keys
# expire by themselves; `r` decides, the TTL only gives memory back.
_HIT_FUNCTION = """
local function hit(k0, a0)
  local now = tonumber(ARGV[a0])
  local counts, resets, refused = {}, {}, {}
  local retry = 0
  for i = k0 + 1, #KEYS do
    local a = a0 + 1 + (i - k0 - 1) * 4
    local limit = tonumber(ARGV[a])
    local stored = redis.call('HMGET', KEYS[i], 'c', 'r')
    local count, reset = tonumber(stored[1]) or 0, tonumber(stored[2]) or 0
    if reset <= now then
      count, reset = 0, now + tonumber(ARGV[a + 1])
    end
    counts[i], resets[i] = count, reset
    if count >= limit then
      refused[#refused + 1] = i - k0 - 1
      retry = math.max(retry, reset - now)
    end
  end
  if #refused > 0 then
    return {0, retry, unpack(refused)}
  end
  for i = k0 + 1, #KEYS do
    local a = a0 + 1 + (i - k0 - 1) * 4
    local cost = tonumber(ARGV[a + 3])
    if cost > 0 then
      local count, reset = counts[i] + cost, resets[i]
      local lock = tonumber(ARGV[a + 2])
      if lock > 0 and count >= tonumber(ARGV[a]) then
        reset = now + lock
      end
      redis.call('HSET', KEYS[i], 'c', count, 'r', string.format('%d', reset))
      redis.call('PEXPIRE', KEYS[i], reset - now)
    end
  end
  return {1, 0}
end
"""

_HIT = _HIT_FUNCTION + "return hit(0, 1)"

# `_ROTATE`, and only if it filed the new ID, `_HIT` on the remaining keys: a verification
# claims its cookie and charges its limits in one round trip, still claim first, so a lost
# claim charges nothing. -1 says the claim was lost.
_ROTATE_AND_HIT = (
    _HIT_FUNCTION
    + """
if redis.call('DEL', KEYS[1]) ~= 1 then return {-1} end
if not redis.call('SET', KEYS[2], '1', 'PX', ARGV[1], 'NX') then return {-1} end
return hit(2, 2)
"""
)

# `_HIT` on the keys after the first two, and only if it allowed: file the new ID KEYS[2],
# consuming KEYS[1] first when ARGV[2] is 1 (a refused charge spends and files nothing). A
# create or a switch charges its limits and files its new ID in one round trip. The second
# element of an allowed result says whether the new ID was filed.
_HIT_AND_FILE = (
    _HIT_FUNCTION
    + """
local decision = hit(2, 3)
if decision[1] ~= 1 then return decision end
if ARGV[2] == '1' and redis.call('DEL', KEYS[1]) ~= 1 then return {1, 0} end
if redis.call('SET', KEYS[2], '1', 'PX', ARGV[1], 'NX') then return {1, 1} end
return {1, 0}
"""
)


MAX_CONNECTIONS = 128
"""Connections one client (one store in one process) may hold open at once."""


class HiredisPacking(AbstractConnection):
    """Packs commands with hiredis's C encoder, as redis-py's synchronous client already
    does when hiredis is installed; its asyncio connections encode argument by argument in
    Python, which took 20-30 µs for a limit script's 28 arguments against 5 µs here. The
    bytes on the wire are the same (`tests/test_stores.py` compares them)."""

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        # A command name may carry its subcommand ("CONFIG GET"): Redis wants them apart.
        name = args[0]
        if isinstance(name, str):
            args = (*name.encode().split(), *args[1:])
        elif isinstance(name, bytes) and b" " in name:
            args = (*name.split(), *args[1:])
        # EncodableT admits bytearray, which neither packer accepts (redis-py's own raises
        # DataError, hiredis TypeError); nothing here sends one.
        return [hiredis.pack_command(args)]  # type: ignore[arg-type]


_HIREDIS_CLASSES: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def with_hiredis_packing(connection_class: type[AbstractConnection]) -> type[AbstractConnection]:
    """`connection_class` (plain, TLS or Unix socket, as the URL says) packing with hiredis.

    Made once per class, so every client of one kind shares it: `charges_with` compares
    connection classes to tell whether two clients talk to the same server.
    """
    made = _HIREDIS_CLASSES.get(connection_class)
    if made is None:
        name = f"Hiredis{connection_class.__name__}"
        made = _HIREDIS_CLASSES[connection_class] = type(
            name, (HiredisPacking, connection_class), {}
        )
    return made


def redis_client(url: str, timeout_seconds: float) -> Redis:
    """A client for the stores below, which bound each call to `timeout_seconds` as a whole.

    redis-py retries failed commands with backoff by default, which would hold requests
    open during an outage; the server answers 503 at once instead and the next request
    reconnects. The one immediate retry is for a pooled connection that a Redis restart
    left dead: without it, the first command on each such connection fails after the store
    is back. Only a dropped connection is retried, never a timeout, because a command that
    timed out may have run and the scripts here must not run twice.

    Connecting and waiting for a pooled connection have their own limits; reading and
    writing have none here, because each store call runs under one deadline (`_call`).
    redis-py's per-operation socket timeouts cost a timer for every read and a task for
    every write (`asyncio.wait_for`), about 15 % of the instructions of a limit script call
    (`valgrind --tool=callgrind`), and a call cut off by the deadline closes its
    connection, so no late reply is ever read as the next command's.
    """
    # A blocking pool makes a burst beyond `MAX_CONNECTIONS` wait (up to the timeout) for a
    # free connection; redis-py's default pool raises at once, which would answer 503 under
    # load that Redis could easily take.
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=timeout_seconds,
        socket_timeout=None,
        socket_connect_timeout=timeout_seconds,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        decode_responses=False,
    )
    # The URL's scheme chose the class (TCP, TLS or Unix socket); no connection exists yet.
    pool.connection_class = with_hiredis_packing(pool.connection_class)
    return Redis.from_pool(pool)


def _server(client: Redis) -> tuple[object, ...]:
    """Which server and database a client talks to (two clients alike share their keys)."""
    kwargs = client.connection_pool.connection_kwargs
    fields = ("host", "port", "path", "db", "username")
    return (client.connection_pool.connection_class, *(kwargs.get(f) for f in fields))


def _counter_args(counters: Sequence[Counter], now_ms: int) -> tuple[list[Any], list[Any]]:
    """The keys and arguments `_HIT_FUNCTION` reads for `counters`."""
    keys: list[Any] = [COUNTER_PREFIX + c.key for c in counters]
    args: list[Any] = [now_ms]
    for c in counters:
        args.extend((c.limit, c.window_ms, c.lock_ms, c.cost))
    return keys, args


def _decision(result: Sequence[Any]) -> Decision:
    allowed, retry_after_ms, *refused = (int(n) for n in result)
    return Decision(allowed=allowed == 1, retry_after_ms=retry_after_ms, refused=tuple(refused))


def _as_bytes(value: bytes | str) -> bytes:
    # The client is built with decode_responses=False, so this is bytes; the type says both.
    return value if isinstance(value, bytes) else value.encode()


def _milliseconds(seconds: float) -> int:
    return max(1, int(seconds * 1000 + 0.999))


class _RedisBackend:
    """Turns every way a Redis call can fail into `StoreUnavailable` within the timeout."""

    def __init__(self, client: Redis, timeout_seconds: float) -> None:
        self._client = client
        self._timeout_seconds = timeout_seconds

    async def _call(self, operation: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self._timeout_seconds):
                return await operation
        except (RedisError, OSError, TimeoutError):
            raise StoreUnavailable() from None

    async def aclose(self) -> None:
        await self._client.aclose()


class RedisIdStore(_RedisBackend):
    """Single-use IDs as Redis keys with a TTL; the value is a constant placeholder."""

    def __init__(self, client: Redis, timeout_seconds: float = 1.0) -> None:
        super().__init__(client, timeout_seconds)
        self._rotate = client.register_script(_ROTATE)
        self._rotate_and_hit = client.register_script(_ROTATE_AND_HIT)
        self._hit_and_file = client.register_script(_HIT_AND_FILE)

    async def add(self, list_id: bytes, ttl_seconds: float) -> bool:
        created = await self._call(
            self._client.set(ID_PREFIX + list_id, b"1", px=_milliseconds(ttl_seconds), nx=True)
        )
        return bool(created)

    async def consume(self, list_id: bytes) -> bool:
        removed: int = await self._call(self._client.delete(ID_PREFIX + list_id))
        return removed == 1

    async def rotate(self, old_id: bytes, new_id: bytes, ttl_seconds: float) -> bool:
        keys: list[Any] = [ID_PREFIX + old_id, ID_PREFIX + new_id]
        result = await self._call(self._rotate(keys=keys, args=[_milliseconds(ttl_seconds)]))
        return bool(result == 1)

    def charges_with(self, counters: object) -> bool:
        """Whether `counters` keeps its counts in this very Redis (so one script sees both)."""
        return isinstance(counters, RedisCounterStore) and _server(counters.client) == _server(
            self._client
        )

    async def rotate_and_hit(
        self,
        old_id: bytes,
        new_id: bytes,
        ttl_seconds: float,
        counters: Sequence[Counter],
        now_ms: int,
    ) -> Decision | None:
        """`rotate`, then only if it succeeded `RedisCounterStore.hit`, in one atomic script."""
        counter_keys, counter_args = _counter_args(counters, now_ms)
        keys: list[Any] = [ID_PREFIX + old_id, ID_PREFIX + new_id, *counter_keys]
        args: list[Any] = [_milliseconds(ttl_seconds), *counter_args]
        result = await self._call(self._rotate_and_hit(keys=keys, args=args))
        return None if int(result[0]) == -1 else _decision(result)

    async def hit_and_file(
        self,
        counters: Sequence[Counter],
        now_ms: int,
        old_id: bytes | None,
        new_id: bytes,
        ttl_seconds: float,
    ) -> tuple[Decision, bool]:
        """`RedisCounterStore.hit`, then only if allowed `rotate` (or `add` without an old
        ID), in one atomic script; the flag says whether the new ID was filed."""
        counter_keys, counter_args = _counter_args(counters, now_ms)
        old_key = ID_PREFIX + (new_id if old_id is None else old_id)
        keys: list[Any] = [old_key, ID_PREFIX + new_id, *counter_keys]
        args: list[Any] = [_milliseconds(ttl_seconds), 0 if old_id is None else 1, *counter_args]
        result = await self._call(self._hit_and_file(keys=keys, args=args))
        if int(result[0]) != 1:
            return _decision(result), False
        return Decision(allowed=True), int(result[1]) == 1


class RedisKeyStore(_RedisBackend):
    """Wrapped KEKs under `otp:kek:<id>`, expiring when no cookie can need them."""

    def __init__(self, client: Redis, timeout_seconds: float = 1.0) -> None:
        super().__init__(client, timeout_seconds)
        self._get_or_create = client.register_script(_GET_OR_CREATE)

    async def get_or_create(self, key_id: int, candidate: bytes, ttl_seconds: float) -> bytes:
        keys: list[Any] = [KEY_PREFIX + str(key_id).encode()]
        stored = await self._call(
            self._get_or_create(keys=keys, args=[candidate, _milliseconds(ttl_seconds)])
        )
        return _as_bytes(stored)

    async def get(self, key_id: int) -> bytes | None:
        stored = await self._call(self._client.get(KEY_PREFIX + str(key_id).encode()))
        return None if stored is None else _as_bytes(stored)

    async def delete(self, key_id: int) -> None:
        await self._call(self._client.delete(KEY_PREFIX + str(key_id).encode()))


class RedisCounterStore(_RedisBackend):
    """Abuse-limit counters as small hashes `{c: count, r: resets_at_ms}` under `otp:rl:`.

    One `EVALSHA` per decision: Redis runs a script alone, so checking every counter and
    charging them all happens with no other client in between, across every instance.
    """

    def __init__(self, client: Redis, timeout_seconds: float = 1.0) -> None:
        super().__init__(client, timeout_seconds)
        self._hit = client.register_script(_HIT)

    @property
    def client(self) -> Redis:
        """The connection this store uses (an ID store on the same server may share scripts)."""
        return self._client

    async def hit(self, counters: Sequence[Counter], now_ms: int) -> Decision:
        keys, args = _counter_args(counters, now_ms)
        return _decision(await self._call(self._hit(keys=keys, args=args)))

    async def reset(self, keys: Sequence[bytes]) -> None:
        if keys:
            await self._call(self._client.delete(*(COUNTER_PREFIX + k for k in keys)))
