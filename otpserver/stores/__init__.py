"""Store backends for single-use IDs and wrapped keys, chosen by `OTP_STORE_URL`."""

from __future__ import annotations

from otpserver.stores.memory import MemoryIdStore, MemoryKeyStore
from otpserver.stores.redis import RedisIdStore, RedisKeyStore, redis_client

__all__ = ["MemoryIdStore", "MemoryKeyStore", "RedisIdStore", "RedisKeyStore", "redis_client"]
