"""The ring of key-encryption keys (KEKs): which key seals now, which keys may still open.

Key ids are rotation epochs: key `e` seals cookies during `[e·R, (e+1)·R)` for a rotation
period `R`, and stays readable for the longest cookie lifetime after that. Because the id
follows from the clock, instances sharing a store agree on the current key without any
election: the first to call `KeyStore.get_or_create` for an epoch wins, the rest adopt it.
KEKs are wrapped with the master key (AES-KW) before they reach a store; previous master
keys (`OTP_MASTER_KEY_PREVIOUS`) still open the KEKs they wrapped, so a rotation loses
nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

from otpserver.crypto.atrest import master_key_fingerprint
from otpserver.crypto.envelope import KEY_BYTES, unwrap_key, wrap_key
from otpserver.errors import StoreUnavailable
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

    def __init__(
        self,
        store: KeyStore,
        master_key: bytes,
        rotation_seconds: int,
        previous: Sequence[bytes] = (),
    ) -> None:
        self._store = store
        self._master_key = master_key
        self._master_keys = (master_key, *previous)
        self._rotation_seconds = rotation_seconds
        self._cache: dict[int, _CachedKey] = {}

    def epoch(self, now: float) -> int:
        """The id of the key that seals at `now`."""
        return int(now // self._rotation_seconds)

    def retire_at(self, key_id: int) -> float:
        """When the last cookie sealed by `key_id` has surely expired."""
        return (key_id + 1) * self._rotation_seconds + MAX_TTL_SECONDS + CLOCK_SKEW_SECONDS

    async def current(self, now: float) -> tuple[int, bytes]:
        """The key id and KEK that new cookies are sealed with.

        After a master-key rotation that dropped the old key, the store may hold this
        epoch's KEK wrapped under a master key no longer configured. Nothing can open it,
        so cookies sealed with it are lost (`OTP:INVALID_COOKIE`), but new ones must still
        be sealed: the next epoch's slot takes over early (every instance with the new key
        agrees on it, and `find` already accepts it), and only if that too is foreign is it
        replaced. Never a 500.
        """
        epoch = self.epoch(now)
        for key_id in (epoch, epoch + 1):
            cached = self._cache.get(key_id)
            if (
                cached is not None
                and cached.kek is not None
                and now - cached.fetched_at < CURRENT_KEY_CACHE_SECONDS
            ):
                return key_id, cached.kek
            kek = await self._get_or_create(key_id, now)
            if kek is not None:
                return key_id, kek
            log.warning(
                "key %d in the store opens with no configured master key "
                "(OTP_MASTER_KEY rotated without OTP_MASTER_KEY_PREVIOUS?)",
                key_id,
            )
        for _ in range(2):
            # Both slots are foreign: replace the next one. Instances still running with
            # the old master key would do the same; a rolling restart ends that.
            await self._store.delete(epoch + 1)
            kek = await self._get_or_create(epoch + 1, now)
            if kek is not None:
                return epoch + 1, kek
        raise StoreUnavailable()

    async def _get_or_create(self, key_id: int, now: float) -> bytes | None:
        """The KEK stored under `key_id`, made now if none is; None if it opens with no
        configured master key."""
        candidate = wrap_key(self._master_key, os.urandom(KEY_BYTES))
        wrapped = await self._store.get_or_create(key_id, candidate, self.retire_at(key_id) - now)
        kek = self._unwrap(wrapped)
        if kek is not None:
            if wrapped == candidate:
                # This instance's candidate won: the key is new, made once across instances.
                audit.emit("key.rotated", key_number=key_id)
            self._remember(now, key_id, kek)
        return kek

    def _unwrap(self, wrapped: bytes) -> bytes | None:
        """Open a stored KEK with the master key, else with a previous one (a KEK made
        before a rotation keeps working until it retires)."""
        for master_key in self._master_keys:
            kek = unwrap_key(master_key, wrapped)
            if kek is not None:
                return kek
        return None

    async def find(self, key_id: int, now: float) -> bytes | None:
        """The KEK for `key_id` if it may still open cookies, else None."""
        if key_id > self.epoch(now) + 1 or now >= self.retire_at(key_id):
            return None
        cached = self._cache.get(key_id)
        if (
            cached is not None
            and cached.kek is not None
            and now - cached.fetched_at < KEY_CACHE_SECONDS
        ):
            return cached.kek
        wrapped = await self._store.get(key_id)
        kek = None if wrapped is None else self._unwrap(wrapped)
        if kek is not None:
            # Only keys that exist are remembered. A miss is whatever a client's cookie
            # named: cached, a junk cookie naming the next key just before a rotation would
            # make this instance refuse that key, and every cookie sealed with it, for as
            # long as the miss is trusted.
            self._remember(now, key_id, kek)
        return kek

    async def find_again(self, key_id: int, failed: bytes, now: float) -> bytes | None:
        """After the cached KEK `failed` could not open a value naming `key_id`: the store's
        KEK for it, if that is another one, else None.

        A store that lost its keys (a restart without persistence) makes new ones under the
        same ids, and an instance that only opens would keep its copy for
        `KEY_CACHE_SECONDS`, refusing every cookie sealed since. Asking again bounds that
        split to `CURRENT_KEY_CACHE_SECONDS`, like sealing's; a copy fetched more recently
        is not asked about again, so values that never open (junk, tampering) cost at most
        one store call a second per key. A key gone from the store is forgotten at once.
        """
        cached = self._cache.get(key_id)
        if (
            cached is None
            or cached.kek != failed
            or now - cached.fetched_at < CURRENT_KEY_CACHE_SECONDS
        ):
            return None
        # Marked fresh before asking, so values failing together ask only once.
        cached.fetched_at = now
        wrapped = await self._store.get(key_id)
        kek = None if wrapped is None else self._unwrap(wrapped)
        if kek is None:
            # Another request may have forgotten it while this one waited for the store.
            self._cache.pop(key_id, None)
            return None
        self._remember(now, key_id, kek)
        return None if kek == failed else kek

    async def inventory(self, now: float) -> list[tuple[int, bytes | None]]:
        """The KEKs in the store that may still open cookies, oldest first: each epoch with
        the fingerprint of the master key that opens it (None when no configured key does).
        For `python -m otpserver keys status`; it never returns a key."""
        first = max(0, int((now - MAX_TTL_SECONDS - CLOCK_SKEW_SECONDS) // self._rotation_seconds))
        found: list[tuple[int, bytes | None]] = []
        for key_id in range(first, self.epoch(now) + 2):
            if now >= self.retire_at(key_id):
                continue
            wrapped = await self._store.get(key_id)
            if wrapped is None:
                continue
            opener = next(
                (key for key in self._master_keys if unwrap_key(key, wrapped) is not None), None
            )
            found.append((key_id, None if opener is None else master_key_fingerprint(opener)))
        return found

    def _remember(self, now: float, key_id: int, kek: bytes | None) -> None:
        self._cache[key_id] = _CachedKey(kek, now)
        # The cache holds a handful of epochs; dropping retired ones keeps it that way.
        for old in [k for k in self._cache if now >= self.retire_at(k)]:
            del self._cache[old]
