"""Store backends for single-use IDs, wrapped keys and limit counters, chosen by `OTP_STORE_URL`."""

from __future__ import annotations

from otpserver.stores.clients import redis_client
from otpserver.stores.memory import MemoryCounterStore, MemoryIdStore, MemoryKeyStore
from otpserver.stores.redis import RedisCounterStore, RedisIdStore, RedisKeyStore

__all__ = [
    "MemoryCounterStore",
    "MemoryIdStore",
    "MemoryKeyStore",
    "RedisCounterStore",
    "RedisIdStore",
    "RedisKeyStore",
    "redis_client",
]
