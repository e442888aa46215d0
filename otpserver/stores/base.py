"""The store roles the core relies on: single-use IDs, wrapped keys and limit counters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from otpserver.stores.counters import Counter, Decision


class IdStore(Protocol):
    """Single-use token-list IDs with a time to live.

    Every method is atomic with respect to concurrent callers and raises
    `otpserver.errors.StoreUnavailable` when the backend cannot be reached.
    """

    async def add(self, list_id: bytes, ttl_seconds: float) -> bool:
        """Record `list_id` as live for `ttl_seconds`; False if it was already live."""
        ...

    async def consume(self, list_id: bytes) -> bool:
        """Remove `list_id`; True for exactly one caller while it was live."""
        ...

    async def rotate(self, old_id: bytes, new_id: bytes, ttl_seconds: float) -> bool:
        """Consume `old_id` and, only if that succeeded, add `new_id`, in one atomic step."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class KeyStore(Protocol):
    """Wrapped key-encryption keys by numeric id; the store never sees a plaintext key."""

    async def get_or_create(self, key_id: int, candidate: bytes, ttl_seconds: float) -> bytes:
        """Store `candidate` under `key_id` unless a value exists; return the stored value.

        Atomic: instances racing on an empty store all get the same winner back.
        """
        ...

    async def get(self, key_id: int) -> bytes | None:
        """The wrapped key stored under `key_id`, or None once removed or expired."""
        ...

    async def delete(self, key_id: int) -> None:
        """Remove a key, e.g. to revoke every cookie it protects."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class CounterStore(Protocol):
    """Abuse-limit counters with fixed windows, checked and charged all or nothing.

    `hit` is one atomic step, also across processes sharing the backend: with concurrent
    callers, no counter ever goes past its limit. Keys expire by themselves once their
    window ends. Every method raises `otpserver.errors.StoreUnavailable` when the backend
    cannot answer, so the server fails closed with 503.
    """

    async def hit(self, counters: Sequence[Counter], now_ms: int) -> Decision:
        """Charge every counter if each has room (`otpserver.limits.decide`), else none."""
        ...

    async def reset(self, keys: Sequence[bytes]) -> None:
        """Forget the counts under `keys` (a correct code clears its credential's failures)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class MarkerStore(Protocol):
    """Short-lived markers under HMAC-derived names: replay guards, spent codes, revocations.

    Markers are how the server remembers without keeping per-user rows: each is a small
    value under a name the caller derives with a keyed hash, and each expires by itself.
    Every method is one atomic step, also across processes sharing the backend, and raises
    `otpserver.errors.StoreUnavailable` when the backend cannot answer (fail closed).
    """

    async def put_if_absent(self, key: bytes, value: bytes, ttl_seconds: float) -> bool:
        """Store `value` under `key` unless a live marker is there; True for exactly one caller."""
        ...

    async def get(self, key: bytes) -> bytes | None:
        """The live marker under `key`, or None."""
        ...

    async def advance(self, key: bytes, value: int, ttl_seconds: float) -> bool:
        """Store the integer `value` only if it is greater than the live integer under `key`
        (or nothing live is there), restarting the time to live; True when stored.

        Concurrent callers offering the same value: exactly one wins. A marker written by
        `put` with a value that is not an integer is never advanced.
        """
        ...

    async def put(self, key: bytes, value: bytes, ttl_seconds: float) -> None:
        """Store `value` under `key`, replacing whatever is there."""
        ...

    async def delete(self, key: bytes) -> None:
        """Remove the marker under `key`, if any."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
