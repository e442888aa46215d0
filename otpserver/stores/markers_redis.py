"""Redis markers under `{otp}:mk:`: several processes and machines share one set of markers.

Each operation is one round trip and atomic on the server: `SET ... NX PX` for a claim, a
short Lua script for `advance`, and plain `GET`/`SET`/`DEL` for the rest.
"""

from __future__ import annotations

from otpserver.stores.connections import Script
from otpserver.stores.redis import TAG, _milliseconds, _RedisBackend

MARKER_PREFIX = TAG + b":mk:"

# Compare and set in one step no other client can interleave with, so of several instances
# offering the same TOTP step exactly one stores it. Lua numbers are doubles: exact for
# every integer the core advances to (steps, seconds, milliseconds), all far below 2^53.
# A value `put` wrote that is not a number is never advanced.
_ADVANCE = Script.of("""
local stored = redis.call('GET', KEYS[1])
if stored then
  local current = tonumber(stored)
  if current == nil or current >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
""")


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

    async def put(self, key: bytes, value: bytes, ttl_seconds: float) -> None:
        await self._call(
            self._client.execute(
                b"SET", MARKER_PREFIX + key, value, b"PX", _milliseconds(ttl_seconds)
            )
        )

    async def delete(self, key: bytes) -> None:
        await self._call(self._client.execute(b"DEL", MARKER_PREFIX + key))
