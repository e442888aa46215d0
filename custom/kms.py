"""Edit this file to choose where key-encryption keys (KEKs) are kept.

Contract
    `make_key_store(settings)` returns a `KeyStore` (see `otpserver.hooks.KeyStore`). The
    store only ever sees KEKs wrapped (AES-KW) by `OTP_MASTER_KEY`; `get_or_create` must be
    atomic so instances racing on an empty store agree on one key per rotation period.
    Raise `otpserver.errors.StoreUnavailable` when the backend cannot answer.

What the core guarantees before calling
    Called once at start-up. Keys are created lazily, one per rotation period
    (`OTP_KEK_ROTATION_SECONDS`), and asked for with a time to live that outlasts every
    cookie they sealed.

Trade-offs of the default
    The same backend as the IDs. A cloud KMS could hold the master key instead: wrap and
    unwrap there, and keep this store for the wrapped blobs.
"""

from __future__ import annotations

from otpserver.settings.environment import Settings
from otpserver.stores import MemoryKeyStore, RedisKeyStore, redis_client
from otpserver.stores.base import KeyStore


def make_key_store(settings: Settings) -> KeyStore:
    """The key store the settings name."""
    if settings.uses_memory_store:
        return MemoryKeyStore()
    timeout = settings.store_timeout_seconds
    return RedisKeyStore(redis_client(settings.store_url, timeout), timeout)
