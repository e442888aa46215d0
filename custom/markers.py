"""Edit this file to choose where short-lived markers live.

Markers are how the server remembers without per-user rows: the last accepted TOTP step of
an enrolment, spent backup codes, "sets older than this are refused", revoked devices. Each
is a small value under a name derived with a keyed hash (the store never sees a subject, a
code or a secret) and each expires by itself.

Contract
    `make_marker_store(settings)` returns a `MarkerStore` (see
    `otpserver.stores.base.MarkerStore`): `put_if_absent` and `advance` must be atomic
    across every process that serves the same users (exactly one concurrent caller wins),
    every marker must expire after its time to live, and every method must raise
    `otpserver.errors.StoreUnavailable` when the backend cannot answer, so the server fails
    closed with 503. `tests/contracts/markers.py` is the suite a store must pass.

What the core guarantees before calling
    Called once at start-up with validated settings; `settings.store_url` starts with
    memory://, redis://, rediss:// or unix://. Keys are at most 64 bytes, values at most a
    few dozen, and no marker lives longer than the longest-lived blob it guards (a backup
    code set's maximum life, 400 days by default).

Trade-offs of the default
    The same backend as the IDs. `memory://` lives in one process, which is why the server
    refuses several workers on it. `redis://` shares markers between processes and machines
    at one round trip per operation; a marker lost with the Redis data (a flush, a restore)
    forgets that a code was used, so keep Redis persistent where backup codes matter.
"""

from __future__ import annotations

from otpserver.settings.environment import Settings
from otpserver.stores import MemoryMarkerStore, RedisMarkerStore, redis_client
from otpserver.stores.base import MarkerStore


def make_marker_store(settings: Settings) -> MarkerStore:
    """The marker store the settings name."""
    if settings.uses_memory_store:
        return MemoryMarkerStore()
    timeout = settings.store_timeout_seconds
    return RedisMarkerStore(redis_client(settings.store_url, timeout), timeout)
