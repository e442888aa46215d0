"""Redis stores: several processes and machines share IDs and keys through one Redis.

Each operation is one round trip and atomic on the server (`SET NX PX`, `DEL`, or a short
Lua script). Every backend failure, including a timeout, becomes `StoreUnavailable`, so the
server fails closed with 503 and recovers by itself: the next call connects again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from redis.exceptions import RedisError

from otpserver.errors import StoreUnavailable
from otpserver.observability.outage import STORE
from otpserver.stores.base import Claim, ClaimOutcome, CounterStore, claim_in_steps
from otpserver.stores.connections import MAX_CONNECTIONS, Argument, RedisClient, Script
from otpserver.stores.counters import ALLOWED, Counter, Decision
from otpserver.stores.deadlines import SharedDeadline

T = TypeVar("T")

ID_PREFIX = b"otp:id:"
KEY_PREFIX = b"otp:kek:"
COUNTER_PREFIX = b"otp:rl:"

# DEL returns how many keys it removed: exactly one concurrent caller sees 1, and only that
# caller gets the new ID filed.
_ROTATE = Script.of("""
if redis.call('DEL', KEYS[1]) == 1 then
  if redis.call('SET', KEYS[2], '1', 'PX', ARGV[1], 'NX') then return 1 end
end
return 0
""")

# Every instance offers its own candidate; the first write wins and all read the winner.
_GET_OR_CREATE = Script.of("""
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
""")


# `otpserver.stores.counters.decide` then `charged`, in one step no other client can
# interleave with, as a Lua function over the `n` keys after the first `k0` and the
# arguments from `ARGV[a0]`: the caller's clock in ms (so every instance and the tests share
# one notion of "now"), then limit, window, lock and cost per key. The TTL is the window's
# remaining length, so keys expire by themselves; `r` decides, the TTL only gives memory back.
_HIT_FUNCTION = """
local function hit(k0, a0, n)
  local now = tonumber(ARGV[a0])
  local counts, resets, refused = {}, {}, {}
  local retry = 0
  for i = k0 + 1, k0 + n do
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
  for i = k0 + 1, k0 + n do
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

_HIT = Script.of(_HIT_FUNCTION + "return hit(0, 1, #KEYS)")

# `otpserver.stores.base.Claim` in one round trip, so no other client can come between its
# steps. KEYS: the ID to spend, the ID to file (each a placeholder when absent), `n` counter
# keys, then the keys to reset. ARGV: the order ('c' charge first, 's' spend first), whether
# there is an ID to spend and one to file, the new ID's TTL in ms, `n`, then `hit`'s
# arguments. DEL returns how many keys it removed: exactly one concurrent caller sees 1, and
# only that caller files the new ID. The answer: claimed (1/0), then `hit`'s decision.
_CLAIM = Script.of(
    _HIT_FUNCTION
    + """
local n = tonumber(ARGV[5])
local function change_ids()
  if ARGV[2] == '1' and redis.call('DEL', KEYS[1]) ~= 1 then return false end
  if ARGV[3] == '1' and not redis.call('SET', KEYS[2], '1', 'PX', ARGV[4], 'NX') then
    return false
  end
  return true
end
local function reset()
  if #KEYS > 2 + n then redis.call('DEL', unpack(KEYS, 3 + n)) end
end
if ARGV[1] == 'c' then
  local decision = hit(2, 6, n)
  if decision[1] ~= 1 then return {0, unpack(decision)} end
  if not change_ids() then return {0, 1, 0} end
  reset()
  return {1, 1, 0}
end
if not change_ids() then return {0, 1, 0} end
local decision = hit(2, 6, n)
if decision[1] == 1 then reset() end
return {1, unpack(decision)}
"""
)


def redis_client(
    url: str, timeout_seconds: float, *, max_connections: int = MAX_CONNECTIONS
) -> RedisClient:
    """A client for the stores below, which bound each call to `timeout_seconds` as a whole.

    There is no retry with backoff, which would hold requests open during an outage: the
    server answers 503 at once and the next request connects again. The one immediate
    retry is for a pooled connection that a Redis restart left dead, and never follows a
    timeout (`RedisClient`). Connecting has its own limit, the same `timeout_seconds`;
    reading and writing have none of their own, because the store's deadline (`_call`)
    covers the whole call, waiting for a free connection included.
    """
    return RedisClient(
        url, connect_timeout_seconds=timeout_seconds, max_connections=max_connections
    )


def _counter_args(counters: Sequence[Counter], now_ms: int) -> tuple[list[bytes], list[Argument]]:
    """The keys and arguments `_HIT_FUNCTION` reads for `counters`."""
    keys = [COUNTER_PREFIX + c.key for c in counters]
    args: list[Argument] = [now_ms]
    for c in counters:
        args.extend((c.limit, c.window_ms, c.lock_ms, c.cost))
    return keys, args


def _decision(result: Sequence[Any]) -> Decision:
    allowed, retry_after_ms, *refused = (int(n) for n in result)
    if allowed == 1:
        return ALLOWED
    return Decision(allowed=False, retry_after_ms=retry_after_ms, refused=tuple(refused))


def _key_name(key_id: int) -> bytes:
    return KEY_PREFIX + str(key_id).encode()


def _milliseconds(seconds: float) -> int:
    return max(1, int(seconds * 1000 + 0.999))


class _RedisBackend:
    """Turns every way a Redis call can fail into `StoreUnavailable` within the timeout."""

    def __init__(self, client: RedisClient, timeout_seconds: float = 1.0) -> None:
        self._client = client
        self._deadline = SharedDeadline(timeout_seconds)

    @property
    def client(self) -> RedisClient:
        """The client this store sends through."""
        return self._client

    async def _call(self, operation: Awaitable[T]) -> T:
        try:
            return await STORE.timed(self._deadline.run(operation))
        except (RedisError, OSError, TimeoutError):
            raise StoreUnavailable() from None

    async def aclose(self) -> None:
        await self._client.aclose()


class RedisIdStore(_RedisBackend):
    """Single-use IDs as Redis keys with a TTL; the value is a constant placeholder."""

    async def add(self, list_id: bytes, ttl_seconds: float) -> bool:
        created = await self._call(
            self._client.execute(
                b"SET", ID_PREFIX + list_id, b"1", b"PX", _milliseconds(ttl_seconds), b"NX"
            )
        )
        return created is not None

    async def consume(self, list_id: bytes) -> bool:
        removed = await self._call(self._client.execute(b"DEL", ID_PREFIX + list_id))
        return bool(removed == 1)

    async def rotate(self, old_id: bytes, new_id: bytes, ttl_seconds: float) -> bool:
        keys = [ID_PREFIX + old_id, ID_PREFIX + new_id]
        result = await self._call(
            self._client.run_script(_ROTATE, keys, [_milliseconds(ttl_seconds)])
        )
        return bool(result == 1)

    async def claim(self, claim: Claim, counters: CounterStore, now_ms: int) -> ClaimOutcome:
        """One script when `counters` keeps its counts in this very Redis (one round trip,
        nothing in between); otherwise the claim's steps one call each."""
        same_redis = (
            isinstance(counters, RedisCounterStore)
            and counters.client.server == self._client.server
        )
        if not same_redis:
            return await claim_in_steps(self, counters, claim, now_ms)
        counter_keys, counter_args = _counter_args(claim.counters, now_ms)
        keys = [
            ID_PREFIX + (claim.spend or b""),
            ID_PREFIX + (claim.file or b""),
            *counter_keys,
            *(COUNTER_PREFIX + key for key in claim.resets),
        ]
        args: list[Argument] = [
            b"c" if claim.order == "charge_first" else b"s",
            0 if claim.spend is None else 1,
            0 if claim.file is None else 1,
            _milliseconds(claim.ttl_seconds),
            len(claim.counters),
            *counter_args,
        ]
        claimed, *decision = await self._call(self._client.run_script(_CLAIM, keys, args))
        return ClaimOutcome(claimed=int(claimed) == 1, decision=_decision(decision))


class RedisKeyStore(_RedisBackend):
    """Wrapped KEKs under `otp:kek:<id>`, expiring when no cookie can need them."""

    async def get_or_create(self, key_id: int, candidate: bytes, ttl_seconds: float) -> bytes:
        keys = [_key_name(key_id)]
        stored: bytes = await self._call(
            self._client.run_script(_GET_OR_CREATE, keys, [candidate, _milliseconds(ttl_seconds)])
        )
        return stored

    async def get(self, key_id: int) -> bytes | None:
        stored: bytes | None = await self._call(self._client.execute(b"GET", _key_name(key_id)))
        return stored

    async def delete(self, key_id: int) -> None:
        await self._call(self._client.execute(b"DEL", _key_name(key_id)))


class RedisCounterStore(_RedisBackend):
    """Abuse-limit counters as small hashes `{c: count, r: resets_at_ms}` under `otp:rl:`.

    One `EVALSHA` per decision: Redis runs a script alone, so checking every counter and
    charging them all happens with no other client in between, across every instance.
    """

    async def hit(self, counters: Sequence[Counter], now_ms: int) -> Decision:
        keys, args = _counter_args(counters, now_ms)
        return _decision(await self._call(self._client.run_script(_HIT, keys, args)))

    async def reset(self, keys: Sequence[bytes]) -> None:
        if keys:
            await self._call(self._client.execute(b"DEL", *(COUNTER_PREFIX + k for k in keys)))
