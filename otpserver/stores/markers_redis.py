"""Redis markers under `{otp}:mk:`: several processes and machines share one set of markers.

Each operation is one round trip and atomic on the server: `SET ... NX PX` for a claim, a
short Lua script for `advance` and for a second-factor check (`MarkerClaim`), and plain
`GET`/`SET`/`DEL` for the rest.
"""

from __future__ import annotations

from otpserver.stores.base import (
    SUPERSEDED,
    CounterStore,
    MarkerAdvance,
    MarkerClaim,
    MarkerOutcome,
    MarkerPut,
    MarkerRead,
    claim_marker_in_steps,
    marker_gate_refused,
    read_markers_in_steps,
)
from otpserver.stores.connections import Argument, Script
from otpserver.stores.counters import Counter
from otpserver.stores.redis import (
    _HIT_FUNCTION,
    TAG,
    _counter_args,
    _decision,
    _gate_args,
    _milliseconds,
    _RedisBackend,
)

MARKER_PREFIX = TAG + b":mk:"

# Compare and set in one step no other client can interleave with, so of several instances
# offering the same TOTP step exactly one stores it. Lua numbers are doubles: exact for
# every integer the core advances to (steps, seconds, milliseconds), all far below 2^53.
# A value `put` wrote that is not a number is never advanced.
_ADVANCE_FUNCTION = """
local function advance(key, value, ttl_ms)
  local stored = redis.call('GET', key)
  if stored then
    local current = tonumber(stored)
    if current == nil or current >= tonumber(value) then return false end
  end
  redis.call('SET', key, value, 'PX', ttl_ms)
  return true
end
"""

_ADVANCE = Script.of(
    _ADVANCE_FUNCTION + "if advance(KEYS[1], ARGV[1], ARGV[2]) then return 1 end\nreturn 0\n"
)

# `otpserver.stores.base.MarkerClaim` in one round trip, so no other client comes between
# the gate, the lockout, the take and the reset. KEYS: the marker to take (a placeholder when
# there is none), the gate's counter key if there is one, `n` failure counters, then the
# not-before markers. ARGV: how to take ('a' advance, 'p' put if absent, '' nothing), the
# value, its TTL in ms, `n`, the instant the not-before markers are held against, whether
# there is a gate (`g`, 0 or 1), the gate's `hit` arguments if so, then the failures'. The
# gate goes first and alone, so a refused one changes nothing. A not-before marker counts
# only as decimal digits, as `newer_than` reads it (Lua's doubles are exact for any
# millisecond instant). The answer: taken (1/0, 2 for superseded, 3 when the gate refused
# and the decision that follows is the gate's), then the decision.
_MARKER_CLAIM = Script.of(
    _HIT_FUNCTION
    + _ADVANCE_FUNCTION
    + """
local n, g = tonumber(ARGV[4]), tonumber(ARGV[6])
local k0, a0 = 1 + g, 7 + 5 * g
if g == 1 then
  local gate = hit(1, 7, 1)
  if gate[1] ~= 1 then return {3, unpack(gate)} end
end
for i = k0 + n + 1, #KEYS do
  local stored = redis.call('GET', KEYS[i])
  if stored and string.match(stored, '^%d+$') and tonumber(stored) > tonumber(ARGV[5]) then
    return {2, 1, 0}
  end
end
local decision = hit(k0, a0, n)
if decision[1] ~= 1 then return {0, unpack(decision)} end
local taken = false
if ARGV[1] == 'a' then
  taken = advance(KEYS[1], ARGV[2], ARGV[3])
elseif ARGV[1] == 'p' then
  taken = redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3], 'NX') and true or false
end
if not taken then return {0, 1, 0} end
if n > 0 then redis.call('DEL', unpack(KEYS, k0 + 1, k0 + n)) end
return {1, 1, 0}
"""
)
_MARKER_SUPERSEDED = 2
_MARKER_GATE_REFUSED = 3

# `MarkerStore.read` with a gate, in one round trip: the gate's charge, then the markers.
# KEYS: the gate's counter key, then the markers. ARGV: the gate's `hit` arguments. The
# answer: 1 and the values (false where none), or 0 and the gate's refusing decision.
_GATED_READ = Script.of(
    _HIT_FUNCTION
    + """
local gate = hit(0, 1, 1)
if gate[1] ~= 1 then return {0, gate} end
return {1, redis.call('MGET', unpack(KEYS, 2))}
"""
)


class RedisMarkerStore(_RedisBackend):
    """Markers as Redis strings with a TTL, so they expire by themselves."""

    async def put_if_absent(self, key: bytes, value: bytes, ttl_seconds: float) -> bool:
        # A claim (a spent backup code, a replay guard): a consuming step, so it advances the
        # store sequence and waits for replicas like an ID's (`_RedisBackend._guarded`).
        created = await self._call(
            self._guarded(
                b"SET", MARKER_PREFIX + key, value, b"PX", _milliseconds(ttl_seconds), b"NX"
            )
        )
        return created is not None

    async def get(self, key: bytes) -> bytes | None:
        stored: bytes | None = await self._call(self._client.execute(b"GET", MARKER_PREFIX + key))
        return stored

    async def advance(self, key: bytes, value: int, ttl_seconds: float) -> bool:
        result = await self._call(
            self._guarded(
                1, MARKER_PREFIX + key, value, _milliseconds(ttl_seconds), script=_ADVANCE
            )
        )
        return bool(result == 1)

    async def read(
        self,
        names: tuple[bytes, ...],
        gate: Counter | None,
        counters: CounterStore,
        now_ms: int,
    ) -> MarkerRead:
        """One `MGET`, or with a gate one script when `counters` keeps its counts in this
        very Redis; otherwise the gate's charge, then the reads."""
        keys = [MARKER_PREFIX + name for name in names]
        if gate is None:
            if not keys:
                return MarkerRead(())
            values = await self._call(self._client.execute(b"MGET", *keys))
            return MarkerRead(tuple(values))
        if not keys or not self.shares_server_with(counters):
            return await read_markers_in_steps(self, counters, names, gate, now_ms)
        gate_keys, gate_args = _counter_args((gate,), now_ms)
        allowed, found = await self._call(
            self._guarded(1 + len(keys), *gate_keys, *keys, *gate_args, script=_GATED_READ)
        )
        if int(allowed) != 1:
            return MarkerRead((), _decision(found))
        return MarkerRead(tuple(found))

    async def claim(self, claim: MarkerClaim, counters: CounterStore, now_ms: int) -> MarkerOutcome:
        """One script when `counters` keeps its counts in this very Redis (one round trip,
        nothing in between); otherwise the claim's steps one call each."""
        if not self.shares_server_with(counters):
            return await claim_marker_in_steps(self, counters, claim, now_ms)
        take = claim.take
        how, value, ttl_ms = b"", b"", 1
        if isinstance(take, MarkerAdvance):
            how, value, ttl_ms = b"a", str(take.value).encode(), _milliseconds(take.ttl_seconds)
        elif isinstance(take, MarkerPut):
            how, value, ttl_ms = b"p", take.value, _milliseconds(take.ttl_seconds)
        gate_keys, gate_args = _gate_args(claim.gate, now_ms)
        counter_keys, counter_args = _counter_args(claim.failures, now_ms)
        keys = [
            MARKER_PREFIX + (b"" if take is None else take.key),
            *gate_keys,
            *counter_keys,
            *(MARKER_PREFIX + key for key in claim.not_before),
        ]
        args: list[Argument] = [
            how,
            value,
            ttl_ms,
            len(claim.failures),
            claim.issued_at_ms,
            *gate_args,
            *counter_args,
        ]
        taken, *decision = await self._call(
            self._guarded(len(keys), *keys, *args, script=_MARKER_CLAIM)
        )
        if int(taken) == _MARKER_GATE_REFUSED:
            return marker_gate_refused(_decision(decision))
        if int(taken) == _MARKER_SUPERSEDED:
            return SUPERSEDED
        return MarkerOutcome(taken=int(taken) == 1, decision=_decision(decision))

    async def put(self, key: bytes, value: bytes, ttl_seconds: float) -> None:
        await self._call(
            self._client.execute(
                b"SET", MARKER_PREFIX + key, value, b"PX", _milliseconds(ttl_seconds)
            )
        )

    async def delete(self, key: bytes) -> None:
        await self._call(self._client.execute(b"DEL", MARKER_PREFIX + key))
