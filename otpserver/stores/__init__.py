"""Store backends for single-use IDs, wrapped keys, limit counters and markers, chosen by
`OTP_STORE_URL`."""

from __future__ import annotations

from otpserver.stores.clients import redis_client
from otpserver.stores.markers_memory import MemoryMarkerStore
from otpserver.stores.markers_redis import RedisMarkerStore
from otpserver.stores.memory import MemoryCounterStore, MemoryIdStore, MemoryKeyStore
from otpserver.stores.redis import RedisCounterStore, RedisIdStore, RedisKeyStore

__all__ = [
    "MemoryCounterStore",
    "MemoryIdStore",
    "MemoryKeyStore",
    "MemoryMarkerStore",
    "RedisCounterStore",
    "RedisIdStore",
    "RedisKeyStore",
    "RedisMarkerStore",
    "redis_client",
]
