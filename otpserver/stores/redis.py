"""Redis stores: several processes and machines share IDs and keys through one Redis.

Each operation is one round trip and atomic on the server (`SET NX PX`, `DEL`, or a short
Lua script). Every backend failure, including a timeout, becomes `StoreUnavailable`, so the
server fails closed with 503 and recovers by itself: the next call connects again.

Every key sits under one hash tag, `{otp}`, so on a Redis Cluster all of them live in one
slot and every script's keys are on one node; one primary carries the load either way
(SPEC §17, README "Redis: high availability, backups and restores").

A consumed ID must never come back (SPEC §17). Every consuming or charging step also
advances a store sequence, `{otp}:seq`, in the same round trip; a process that sees the
sequence go back (a restored snapshot, a failover to a lagging replica) refuses, deletes
every pending ID and key (`revoke_pending`) and moves the sequence past every value handed
out so the other instances agree. The sequence is stamped with the store's clock, so a
store that restarts empty (and starts over at 1, unstamped) is told apart from one that
went back. With `OTP_REDIS_WAIT_REPLICAS=n` those steps also wait, still in the same
round trip, until n replicas hold them, so a failover cannot lose them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.exceptions import NoScriptError, RedisError, ResponseError

from otpserver.errors import ConfigError, StoreUnavailable
from otpserver.observability.outage import STORE
from otpserver.settings.environment import Settings
from otpserver.stores.base import (
    Claim,
    ClaimOutcome,
    CounterStore,
    claim_in_steps,
    gate_refused,
)
from otpserver.stores.clients import StoreClient, redis_client
from otpserver.stores.connections import Argument, Script
from otpserver.stores.counters import ALLOWED, Counter, Decision

T = TypeVar("T")

log = logging.getLogger("otpserver.stores")

TAG = b"{otp}"
"""The hash tag every key shares: one Cluster slot, so every script's keys are together."""
ID_PREFIX = TAG + b":id:"
KEY_PREFIX = TAG + b":kek:"
COUNTER_PREFIX = TAG + b":rl:"
SEQUENCE_KEY = TAG + b":seq"
SEQUENCE_JUMP = 1 << 40
"""How far a revocation moves a sequence that is not yet stamped (below `STAMPED_FLOOR`)."""
STAMP_STEPS_PER_MS = 1024
"""A stamped sequence starts at (the store's clock in ms + 1) * 1024. Catching up with the
clock would take over a million steps a second, more than one Redis primary runs, so every
value handed out before a given millisecond stays below that millisecond's stamp, and a
store stamped again after a restart lands above every value of the one before."""
STAMPED_FLOOR = 1 << 50
"""Sequences from here up are stamped (every stamp since 2005 is). Lower ones come from a
store emptied since it was stamped, or from versions before the stamp; the first instance
that sees one stamps it. Lua's doubles hold every stamp exactly (below 2**53 until 2248)."""
EVICTING_POLICIES = ("allkeys-", "volatile-")
"""`maxmemory-policy` prefixes that may evict a limit counter (which hands out guesses)."""

# DEL returns how many keys it removed: exactly one concurrent caller sees 1, and only that
# caller gets the new ID filed.
_ROTATE = Script.of("""
if redis.call('DEL', KEYS[1]) == 1 then
  if redis.call('SET', KEYS[2], '1', 'PX', ARGV[1], 'NX') then return 1 end
end
return 0
""")

# The stamp of the store's next millisecond, by its own clock (one clock for every instance).
_NEXT_STAMP = f"""
local function next_stamp()
  local now = redis.call('TIME')
  local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  return (ms + 1) * {STAMP_STEPS_PER_MS}
end
"""

# Moves the store sequence to the next millisecond's stamp, unless it is stamped already (so
# instances racing to it stamp once). KEYS: the sequence. The answer: where it is.
_STAMP = Script.of(
    _NEXT_STAMP
    + f"""
local stored = tonumber(redis.call('GET', KEYS[1]) or '0')
if stored >= {STAMPED_FLOOR} then return stored end
local stamped = string.format('%d', next_stamp())
redis.call('SET', KEYS[1], stamped)
return tonumber(stamped)
"""
)

# After a restore: past the highest value any instance may remember. Every value handed out
# so far is below the next stamp, so moving there is enough, and no further: a far jump
# would run ahead of the stamps a store emptied later gets. An unstamped sequence also moves
# by `SEQUENCE_JUMP`, as before stamps. KEYS: the sequence. The answer: where it is.
_REVOKED_SEQUENCE = Script.of(
    _NEXT_STAMP
    + f"""
local stored = tonumber(redis.call('INCR', KEYS[1]))
if stored < {STAMPED_FLOOR} then stored = stored + {SEQUENCE_JUMP} end
local moved = string.format('%d', math.max(stored, next_stamp()))
redis.call('SET', KEYS[1], moved)
return tonumber(moved)
"""
)

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
# steps. KEYS: the ID to spend, the ID to file (each a placeholder when absent), the gate's
# counter key if there is one, `n` counter keys, then the keys to reset. ARGV: the order ('c'
# charge first, 's' spend first), whether there is an ID to spend (1/0) and one to file
# (1/0, or 'r': only once the charge refused, `Claim.file_when_refused`), the new ID's TTL
# in ms, `n`, whether there is a gate (`g`, 0 or 1), the gate's `hit` arguments if so, then
# the counters'. The gate goes first in either order, alone, so a refused one changes
# nothing. DEL returns how many keys it removed: exactly one concurrent caller sees 1, and
# only that caller files the new ID. The answer: claimed (1/0, or -1 when the gate refused
# and the decision that follows is the gate's), then `hit`'s decision.
_CLAIM = Script.of(
    _HIT_FUNCTION
    + """
local n, g = tonumber(ARGV[5]), tonumber(ARGV[6])
local k0, a0 = 2 + g, 7 + 5 * g
if g == 1 then
  local gate = hit(2, 7, 1)
  if gate[1] ~= 1 then return {-1, unpack(gate)} end
end
local function file_id()
  return redis.call('SET', KEYS[2], '1', 'PX', ARGV[4], 'NX')
end
local function change_ids()
  if ARGV[2] == '1' and redis.call('DEL', KEYS[1]) ~= 1 then return false end
  if ARGV[3] == '1' and not file_id() then return false end
  return true
end
local function reset()
  if #KEYS > k0 + n then redis.call('DEL', unpack(KEYS, k0 + n + 1)) end
end
if ARGV[1] == 'c' then
  local decision = hit(k0, a0, n)
  if decision[1] ~= 1 then return {0, unpack(decision)} end
  if not change_ids() then return {0, 1, 0} end
  reset()
  return {1, 1, 0}
end
if not change_ids() then return {0, 1, 0} end
local decision = hit(k0, a0, n)
if decision[1] == 1 then reset() elseif ARGV[3] == 'r' then file_id() end
return {1, unpack(decision)}
"""
)

GATE_REFUSED = -1
"""What `_CLAIM` answers first when the claim's gate refused."""


def _gate_args(gate: Counter | None, now_ms: int) -> tuple[list[bytes], list[Argument]]:
    """The keys and arguments a script reads for an optional gate: a flag (0 or 1), then
    `_HIT_FUNCTION`'s arguments for the gate alone."""
    if gate is None:
        return [], [0]
    keys, args = _counter_args((gate,), now_ms)
    return keys, [1, *args]


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


class ReplicasBehind(RedisError):
    """Fewer replicas than `OTP_REDIS_WAIT_REPLICAS` confirmed a step within the timeout."""


class StoreWentBack(RedisError):
    """The store sequence went back: the store lost writes this process saw it make."""


@dataclass
class _Timeline:
    """What one store of this process knows of the store sequence."""

    highest: int = 0
    emptied: int = 0
    """How often the sequence was found emptied: a store emptied (a restart without
    persistence, a flush) holds no ID at all, so it cannot bring one back."""
    broken: bool = False
    repair: asyncio.Task[None] | None = None
    unstamped: bool = False
    """A step found the sequence unstamped (`STAMPED_FLOOR`): stamp it before answering."""


class _RedisBackend:
    """Turns every way a Redis call can fail into `StoreUnavailable` within the timeout."""

    def __init__(self, client: StoreClient, timeout_seconds: float = 1.0) -> None:
        self._client = client
        self._timeout_seconds = timeout_seconds
        self._timeline = _Timeline()
        # WAIT gives up a little before the call's own deadline, so its answer still comes.
        self._wait_ms = max(1, int(timeout_seconds * 800))

    @property
    def client(self) -> StoreClient:
        """The client this store sends through."""
        return self._client

    def shares_server_with(self, counters: CounterStore) -> bool:
        """Whether `counters` keeps its counts in this very Redis, so a claim can charge them
        in its own script (one round trip, nothing in between)."""
        return (
            isinstance(counters, RedisCounterStore)
            and counters.client.server == self._client.server
        )

    async def _call(self, operation: Awaitable[T]) -> T:
        """The one way every Redis call is made: bounded, and fails closed."""
        try:
            answer = await STORE.timed(self._bounded(operation))
        except StoreWentBack as error:
            self._went_back(error)
            raise StoreUnavailable() from None
        except (RedisError, OSError, TimeoutError):
            raise StoreUnavailable() from None
        if self._timeline.unstamped:
            await self._stamp()
        return answer

    async def _bounded(self, operation: Awaitable[T]) -> T:
        # Inside the outage record, so a call cut off by its deadline counts as a failure.
        async with asyncio.timeout(self._timeout_seconds):
            return await operation

    async def _guarded(self, *command: Argument, script: Script | None = None) -> Any:
        """`command` (or `script` on `command`'s keys and arguments), advancing the store
        sequence and, with `OTP_REDIS_WAIT_REPLICAS`, waiting for the replicas, all in one
        round trip: the form of every step that consumes an ID or charges a counter."""
        timeline = self._timeline
        if timeline.broken:
            raise StoreWentBack("pending state is being revoked after the store went back")
        floor, emptied = timeline.highest, timeline.emptied
        first: tuple[Argument, ...] = command if script is None else (b"EVALSHA", script.sha)
        if script is not None:
            first += command
        commands: list[tuple[Argument, ...]] = [first, (b"INCR", SEQUENCE_KEY)]
        wait = self._client.wait_replicas
        if wait:
            commands.append((b"WAIT", wait, self._wait_ms))
        answers = await self._client.pipeline(commands)
        if script is not None and isinstance(answers[0], NoScriptError):
            # A restarted or flushed server: EVAL runs the source and caches it again. The
            # sequence already moved; the WAIT, if any, comes again after the script.
            retry = [(b"EVAL", script.source, *command), *commands[2:]]
            answers[0], *waited = await self._client.pipeline(retry)
            answers[2:] = waited
        for answer in answers:
            if isinstance(answer, ResponseError):
                raise answer
        sequence = int(answers[1])
        if sequence < STAMPED_FLOOR:
            timeline.unstamped = True
        if _emptied(sequence, floor):
            timeline.highest, timeline.emptied = sequence, timeline.emptied + 1
        elif timeline.emptied == emptied:
            # Whatever this store had seen before sending was written before this INCR ran,
            # so a store that kept its writes answers more; equal or less means it lost some.
            if sequence <= floor:
                raise StoreWentBack(f"store sequence {sequence} after {floor} was seen")
            timeline.highest = max(timeline.highest, sequence)
        if wait and int(answers[2]) < wait:
            raise ReplicasBehind(f"{int(answers[2])} of {wait} replicas confirmed in time")
        return answers[0]

    async def _stamp(self) -> None:
        """Stamp the sequence, after the step that found it unstamped and apart from it: that
        step is done and answers whatever becomes of the stamp, and if the stamp fails, the
        next step that finds the sequence unstamped tries again. Once per emptied store and
        instance, give or take instances racing to it (the script stamps once)."""
        self._timeline.unstamped = False
        try:
            async with asyncio.timeout(self._timeout_seconds):
                stamped = int(await self._client.run_script(_STAMP, (SEQUENCE_KEY,), ()))
        except (RedisError, OSError, TimeoutError) as error:
            log.warning("stamping the store sequence failed (%s); retried on a later step", error)
            return
        # What the next step would raise the floor to anyway.
        self._timeline.highest = max(self._timeline.highest, stamped)

    def _went_back(self, error: StoreWentBack) -> None:
        timeline = self._timeline
        if not timeline.broken:
            timeline.broken = True
            log.error(
                "store.unavailable: the Redis store went back in time (%s): refusing and "
                "revoking every pending cookie and token",
                error,
            )
        if timeline.repair is None or timeline.repair.done():
            timeline.repair = asyncio.get_running_loop().create_task(self._repair())

    async def _repair(self) -> None:
        try:
            async with asyncio.timeout(60):
                highest = (await revoke_pending(self._client)).sequence
        except (RedisError, OSError, TimeoutError) as error:
            # One line: the cause says it all, a traceback would only repeat the client's stack.
            log.error("revoking pending state failed (%s); retried on the next request", error)  # noqa: TRY400
            return
        self._timeline.highest, self._timeline.broken = highest, False
        log.warning("store.unavailable ended: every pending cookie and token was revoked")

    async def aclose(self) -> None:
        await self._client.aclose()


def _emptied(sequence: int, floor: int) -> bool:
    """Whether a step's sequence says the store was emptied rather than sent back in time.

    An emptied store holds no ID, key or marker at all, so nothing can come back from it,
    and its sequence starts over at 1, unstamped. Once an instance has seen a stamped
    sequence, any unstamped one is such a new start, also when other instances' steps came
    first (they would have seen 1). A restored snapshot or a lagging replica keeps its stamp
    and answers at or below the floor: gone back. Stamps follow the store's clock, so a
    store emptied and stamped again lands above every value of the one before.
    """
    return sequence == 1 or (sequence < STAMPED_FLOOR <= floor)


@dataclass(frozen=True, slots=True)
class Revoked:
    """What `revoke_pending` removed, and where it left the store sequence."""

    ids: int
    keys: int
    sequence: int


async def revoke_pending(client: StoreClient) -> Revoked:
    """Make every pending cookie and token invalid: delete every single-use ID and every
    key-encryption key, and move the store sequence past anything an instance remembers.

    What `python -m otpserver keys revoke-pending` runs after restoring a store. Instances
    still holding a deleted key open no cookie with it: its ID is gone too, and the key
    itself leaves their caches within `otpserver.crypto.keyring.KEY_CACHE_SECONDS`."""
    ids = await client.delete_matching(ID_PREFIX + b"*")
    keys = await client.delete_matching(KEY_PREFIX + b"*")
    sequence = int(await client.run_script(_REVOKED_SEQUENCE, (SEQUENCE_KEY,), ()))
    return Revoked(ids, keys, sequence)


async def check_eviction(client: StoreClient, *, production: bool, allowed: bool) -> None:
    """Refuse (`ConfigError`) a `maxmemory-policy` that may evict limit counters, in
    production and unless `OTP_REDIS_ALLOW_EVICTION=true`; only warn otherwise."""
    policies = await client.eviction_policies()
    risky = sorted(p for p in policies if p.startswith(EVICTING_POLICIES))
    if not risky:
        return
    line = (
        f"the Redis at OTP_STORE_URL has maxmemory-policy {', '.join(risky)}, which may evict "
        "limit counters and hand out guesses: set it to noeviction, or "
        "OTP_REDIS_ALLOW_EVICTION=true to accept that"
    )
    if production and not allowed:
        raise ConfigError(line)
    log.warning("%s", line)


async def check_store(settings: Settings) -> None:
    """Start-up checks of a Redis store (`check_eviction`); nothing for memory://. A server
    that hides its memory settings (no `INFO memory`) is let through with a warning."""
    if settings.uses_memory_store:
        return
    client = redis_client(settings.store_url, settings.store_timeout_seconds)
    try:
        async with asyncio.timeout(settings.store_timeout_seconds * 3):
            await check_eviction(
                client,
                production=not settings.is_development,
                allowed=settings.redis.allow_eviction,
            )
    except (RedisError, OSError, TimeoutError) as error:
        log.warning("could not read the Redis maxmemory-policy (%s); not checked", error)
    finally:
        await client.aclose()


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
        removed = await self._call(self._guarded(b"DEL", ID_PREFIX + list_id))
        return bool(removed == 1)

    async def rotate(self, old_id: bytes, new_id: bytes, ttl_seconds: float) -> bool:
        keys = [ID_PREFIX + old_id, ID_PREFIX + new_id]
        result = await self._call(
            self._guarded(len(keys), *keys, _milliseconds(ttl_seconds), script=_ROTATE)
        )
        return bool(result == 1)

    async def claim(self, claim: Claim, counters: CounterStore, now_ms: int) -> ClaimOutcome:
        """One script when `counters` keeps its counts in this very Redis (one round trip,
        nothing in between); otherwise the claim's steps one call each."""
        if not self.shares_server_with(counters):
            return await claim_in_steps(self, counters, claim, now_ms)
        gate_keys, gate_args = _gate_args(claim.gate, now_ms)
        counter_keys, counter_args = _counter_args(claim.counters, now_ms)
        keys = [
            ID_PREFIX + (claim.spend or b""),
            ID_PREFIX + (claim.file or b""),
            *gate_keys,
            *counter_keys,
            *(COUNTER_PREFIX + key for key in claim.resets),
        ]
        args: list[Argument] = [
            b"c" if claim.order == "charge_first" else b"s",
            0 if claim.spend is None else 1,
            # 'r': filed only if the charge refuses (`Claim.file_when_refused`).
            0
            if claim.file is None
            else b"r"
            if claim.file_when_refused and claim.order == "spend_first"
            else 1,
            _milliseconds(claim.ttl_seconds),
            len(claim.counters),
            *gate_args,
            *counter_args,
        ]
        claimed, *decision = await self._call(self._guarded(len(keys), *keys, *args, script=_CLAIM))
        if int(claimed) == GATE_REFUSED:
            return gate_refused(_decision(decision))
        return ClaimOutcome(claimed=int(claimed) == 1, decision=_decision(decision))


class RedisKeyStore(_RedisBackend):
    """Wrapped KEKs under `{otp}:kek:<id>`, expiring when no cookie can need them."""

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
    """Abuse-limit counters as small hashes `{c: count, r: resets_at_ms}` under `{otp}:rl:`.

    One `EVALSHA` per decision: Redis runs a script alone, so checking every counter and
    charging them all happens with no other client in between, across every instance.
    """

    async def hit(self, counters: Sequence[Counter], now_ms: int) -> Decision:
        keys, args = _counter_args(counters, now_ms)
        return _decision(await self._call(self._guarded(len(keys), *keys, *args, script=_HIT)))

    async def reset(self, keys: Sequence[bytes]) -> None:
        if keys:
            await self._call(self._client.execute(b"DEL", *(COUNTER_PREFIX + k for k in keys)))
