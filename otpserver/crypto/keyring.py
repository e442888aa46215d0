"""The ring of key-encryption keys (KEKs): which key seals now, which keys may still open.

Key ids are rotation epochs: key `e` seals cookies during `[e·R, (e+1)·R)` for a rotation
period `R`, and stays readable for the longest cookie lifetime after that. Because the id
follows from the clock, instances sharing a store agree on the current key without any
election: the first to call `KeyStore.get_or_create` for an epoch wins, the rest adopt it.
KEKs are wrapped with the master key (AES-KW) before they reach a store.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from otpserver.crypto.envelope import KEY_BYTES, unwrap_key, wrap_key
from otpserver.errors import ServerError
from otpserver.observability import audit
from otpserver.settings.overrides import MAX_TTL_SECONDS
from otpserver.stores.base import KeyStore

log = logging.getLogger("otpserver.crypto.keyring")

CLOCK_SKEW_SECONDS = 60
"""Slack for instances whose clocks disagree a little."""
KEY_CACHE_SECONDS = 30.0
"""How long a fetched key is trusted before the store is asked again, so a key deleted
from the store (revoked) stops working on every instance within this time."""
CURRENT_KEY_CACHE_SECONDS = 1.0
"""How long the key that seals is trusted before sealing asks the store again. If the store
loses it (a Redis restart without persistence, or a deletion), the next instance to ask
makes a new one, and until the others ask again they would seal with a key no other
instance can open. Asking about once a second while sealing bounds that split to about a
second; opening reads the same cache entry, so it follows."""


@dataclass(slots=True)
class _CachedKey:
    kek: bytes | None
    fetched_at: float


class KeyRing:
    """Finds the current KEK and older KEKs by id, caching them briefly."""

    def __init__(self, store: KeyStore, master_key: bytes, rotation_seconds: int) -> None:
        self._store = store
        self._master_key = master_key
        self._rotation_seconds = rotation_seconds
        self._cache: dict[int, _CachedKey] = {}

    def epoch(self, now: float) -> int:
        """The id of the key that seals at `now`."""
        return int(now // self._rotation_seconds)

    def retire_at(self, key_id: int) -> float:
        """When the last cookie sealed by `key_id` has surely expired."""
        return (key_id + 1) * self._rotation_seconds + MAX_TTL_SECONDS + CLOCK_SKEW_SECONDS

    async def current(self, now: float) -> tuple[int, bytes]:
        """The key id and KEK that new cookies are sealed with."""
        key_id = self.epoch(now)
        cached = self._cache.get(key_id)
        if (
            cached is not None
            and cached.kek is not None
            and now - cached.fetched_at < CURRENT_KEY_CACHE_SECONDS
        ):
            return key_id, cached.kek
        candidate = wrap_key(self._master_key, os.urandom(KEY_BYTES))
        wrapped = await self._store.get_or_create(key_id, candidate, self.retire_at(key_id) - now)
        kek = unwrap_key(self._master_key, wrapped)
        if kek is None:
            # The store holds a key this master key cannot open: a deployment error, not a
            # client's. Refuse to seal rather than silently fork onto a different key.
            log.error("key %d in the store does not open with OTP_MASTER_KEY", key_id)
            raise ServerError()
        if wrapped == candidate:
            # This instance's candidate won: the key is new, made once across all instances.
            audit.emit("key.rotated", key_number=key_id)
        self._remember(now, key_id, kek)
        return key_id, kek

    async def find(self, key_id: int, now: float) -> bytes | None:
        """The KEK for `key_id` if it may still open cookies, else None."""
        if key_id > self.epoch(now) + 1 or now >= self.retire_at(key_id):
            return None
        cached = self._cache.get(key_id)
        if cached is not None and now - cached.fetched_at < KEY_CACHE_SECONDS:
            return cached.kek
        wrapped = await self._store.get(key_id)
        kek = None if wrapped is None else unwrap_key(self._master_key, wrapped)
        self._remember(now, key_id, kek)
        return kek

    def _remember(self, now: float, key_id: int, kek: bytes | None) -> None:
        self._cache[key_id] = _CachedKey(kek, now)
        # The cache holds a handful of epochs; dropping retired ones keeps it that way.
        for old in [k for k in self._cache if now >= self.retire_at(k)]:
            del self._cache[old]
