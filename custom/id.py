"""Edit this file to choose where single-use cookie IDs live.

Contract
    `make_id_store(settings)` returns an `IdStore` (see `otpserver.hooks.IdStore`): `add`,
    `consume` and `rotate` must be atomic across every process that serves the same users,
    and must raise `otpserver.errors.StoreUnavailable` when the backend cannot answer, so the
    server fails closed with 503.

What the core guarantees before calling
    Called once at start-up with validated settings; `settings.store_url` starts with
    memory://, redis://, rediss:// or unix://.

Trade-offs of the default
    `memory://` needs nothing and is fastest, but lives in one process: several workers or
    machines would each accept a cookie once, so the server refuses to start that way.
    `redis://` shares IDs between processes and machines at one round trip per request.
"""

from __future__ import annotations

from otpserver.settings.environment import Settings
from otpserver.stores import MemoryIdStore, RedisIdStore, redis_client
from otpserver.stores.base import IdStore


def make_id_store(settings: Settings) -> IdStore:
    """The ID store the settings name."""
    if settings.uses_memory_store:
        return MemoryIdStore(max_ids=settings.memory_max_ids)
    timeout = settings.store_timeout_seconds
    wait = settings.redis.wait_replicas
    return RedisIdStore(redis_client(settings.store_url, timeout, wait_replicas=wait), timeout)
