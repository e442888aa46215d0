"""Edit this file to choose where the server keeps its little state: IDs, keys, counters, markers.

The server keeps no per-user rows. What it does keep, it keeps in four stores, each made
once at start-up by a factory below from the validated settings:

* `make_id_store` — the random single-use IDs that every cookie carries and every state
  change rotates. `add`, `consume` and `rotate` must be atomic across every process that
  serves the same users (exactly one concurrent caller consumes an ID).
* `make_key_store` — the key-encryption keys (KEKs), only ever seen wrapped (AES-KW) by
  `OTP_MASTER_KEY`. `get_or_create` must be atomic, so instances racing on an empty store
  agree on one key per rotation period (`OTP_KEK_ROTATION_SECONDS`).
* `make_counter_store` — the abuse-limit counters (`custom/limits.py` sets the limits).
  `hit` must check every counter of a request and charge all of them or none, atomically,
  and keys must expire by themselves.
* `make_marker_store` — short-lived markers under keyed-hash names: the last accepted TOTP
  step of an enrolment, spent backup codes, "sets older than this are refused", revoked
  devices. `put_if_absent` and `advance` must be atomic (exactly one concurrent caller
  wins) and every marker must expire after its time to live. `claim` is a second-factor
  check's one step (`MarkerClaim`: lockout, single-use marker, reset); a store that keeps
  the counters elsewhere returns `claim_marker_in_steps(...)` from `otpserver.stores.base`.
  A marker lost with the store's data (a flush, a restore) forgets that a code was used,
  so keep Redis persistent where backup codes matter.

The contracts are the Protocols `IdStore`, `KeyStore`, `CounterStore` and `MarkerStore`
exported by `otpserver`; `tests/contracts/` holds a test suite for each that a store of your own can
run by subclassing (see the README's Development section).

What the core guarantees before calling
    Each factory is called once at start-up with validated settings; `settings.store_url`
    starts with memory://, redis://, rediss:// or unix://. Store keys are random IDs or
    HMACs: a store never sees a credential, a code or an unwrapped key.

What to raise
    From a store method: `otpserver.errors.StoreUnavailable` when the backend cannot answer,
    so the server fails closed with 503 and sends nothing. From a factory: `ConfigError`
    for a setting it cannot work with.

Trade-offs of the default
    All four on one backend, chosen by `OTP_STORE_URL`. `memory://` needs nothing and is
    fastest, but lives in one process: several workers or machines would each accept a
    cookie once, so the server refuses to start that way. `redis://` shares everything
    between processes and machines at one round trip per request. A cloud KMS could hold
    the master key instead: wrap and unwrap there, and keep the key store for the blobs.
"""

from __future__ import annotations

from otpserver import (
    CounterStore,
    IdStore,
    KeyStore,
    MarkerStore,
    MemoryCounterStore,
    MemoryIdStore,
    MemoryKeyStore,
    MemoryMarkerStore,
    RedisCounterStore,
    RedisIdStore,
    RedisKeyStore,
    RedisMarkerStore,
    Settings,
    redis_client,
)


def make_id_store(settings: Settings) -> IdStore:
    """The ID store the settings name."""
    if settings.uses_memory_store:
        return MemoryIdStore(max_ids=settings.memory_max_ids)
    timeout, wait = settings.store_timeout_seconds, settings.redis.wait_replicas
    return RedisIdStore(redis_client(settings.store_url, timeout, wait_replicas=wait), timeout)


def make_key_store(settings: Settings) -> KeyStore:
    """The key store the settings name."""
    if settings.uses_memory_store:
        return MemoryKeyStore()
    timeout = settings.store_timeout_seconds
    return RedisKeyStore(redis_client(settings.store_url, timeout), timeout)


def make_counter_store(settings: Settings) -> CounterStore:
    """The counter store on the same backend as the IDs: memory://, or Redis (one script
    call per decision)."""
    if settings.uses_memory_store:
        return MemoryCounterStore(max_counters=settings.memory_max_counters)
    timeout, wait = settings.store_timeout_seconds, settings.redis.wait_replicas
    return RedisCounterStore(redis_client(settings.store_url, timeout, wait_replicas=wait), timeout)


def make_marker_store(settings: Settings) -> MarkerStore:
    """The marker store on the same backend as the IDs."""
    if settings.uses_memory_store:
        return MemoryMarkerStore()
    timeout, wait = settings.store_timeout_seconds, settings.redis.wait_replicas
    return RedisMarkerStore(redis_client(settings.store_url, timeout, wait_replicas=wait), timeout)
