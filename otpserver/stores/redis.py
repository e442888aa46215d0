"""Redis stores: several processes and machines share IDs and keys through one Redis.

Each operation is one round trip and atomic on the server (`SET NX PX`, `DEL`, or a short
Lua script). Every backend failure, including a timeout, becomes `StoreUnavailable`, so the
server fails closed with 503 and recovers by itself: redis-py reconnects on the next call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from otpserver.errors import StoreUnavailable

T = TypeVar("T")

ID_PREFIX = b"otp:id:"
KEY_PREFIX = b"otp:kek:"

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


def redis_client(url: str, timeout_seconds: float) -> Redis:
    """A client that gives up after `timeout_seconds` instead of retrying in the background.

    redis-py retries failed commands with backoff by default, which would hold requests
    open during an outage; the server answers 503 at once instead and the next request
    reconnects.
    """
    return Redis.from_url(
        url,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        retry=Retry(NoBackoff(), 0),
        decode_responses=False,
    )


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
            async with asyncio.timeout(self._timeout_seconds * 2):
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
