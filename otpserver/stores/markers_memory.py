"""In-process markers: the default for one worker, and the reference in tests.

Each operation is a plain dictionary step with no `await` inside, so on one event loop it is
atomic without locks. Expiry is checked on every read, so correctness never depends on the
sweep; the sweep only gives memory back, a few one-second buckets per call (the expiry wheel
the other memory stores use), and never scans the whole table on a request.
"""

from __future__ import annotations

import time

from otpserver.errors import StoreUnavailable
from otpserver.stores.base import (
    CounterStore,
    MarkerClaim,
    MarkerOutcome,
    MarkerRead,
    claim_marker_in_steps,
    read_markers_in_steps,
)
from otpserver.stores.counters import Counter
from otpserver.stores.memory import _SECONDS_SWEPT_PER_CALL, Clock, _ExpiryWheel


class MemoryMarkerStore:
    """Markers in a dictionary, bounded to `max_markers` entries (beyond that: 503).

    Time never runs backwards here: a call that read the clock before another is judged at
    the latest instant already seen, so no marker is filed in a bucket the sweep has passed.
    """

    def __init__(self, max_markers: int = 1_000_000, clock: Clock = time.time) -> None:
        self._max_markers = max_markers
        self._clock = clock
        # key -> (value, expires_at); each key is filed in exactly one bucket of the wheel.
        self._markers: dict[bytes, tuple[bytes, float]] = {}
        self._wheel: _ExpiryWheel[set[bytes]] = _ExpiryWheel(int(clock()))
        self._latest = 0.0

    def __len__(self) -> int:
        return len(self._markers)

    async def put_if_absent(self, key: bytes, value: bytes, ttl_seconds: float) -> bool:
        now = self._now()
        if self._live(key, now) is not None:
            return False
        self._file(key, value, now, ttl_seconds)
        return True

    async def get(self, key: bytes) -> bytes | None:
        return self._live(key, self._now())

    async def advance(self, key: bytes, value: int, ttl_seconds: float) -> bool:
        now = self._now()
        stored = self._live(key, now)
        if stored is not None:
            current = _integer(stored)
            if current is None or current >= value:
                return False
        self._file(key, str(value).encode(), now, ttl_seconds)
        return True

    async def put(self, key: bytes, value: bytes, ttl_seconds: float) -> None:
        self._file(key, value, self._now(), ttl_seconds)

    async def read(
        self,
        names: tuple[bytes, ...],
        gate: Counter | None,
        counters: CounterStore,
        now_ms: int,
    ) -> MarkerRead:
        """The steps in order: on one event loop nothing else runs in between."""
        return await read_markers_in_steps(self, counters, names, gate, now_ms)

    async def claim(self, claim: MarkerClaim, counters: CounterStore, now_ms: int) -> MarkerOutcome:
        """The claim's steps in order: on one event loop nothing else runs in between,
        since neither memory store ever waits inside an operation."""
        return await claim_marker_in_steps(self, counters, claim, now_ms)

    async def delete(self, key: bytes) -> None:
        self._now()
        old = self._markers.pop(key, None)
        if old is not None:
            self._unfile(key, old[1])

    async def aclose(self) -> None:
        self._markers.clear()
        self._wheel.buckets.clear()

    def _now(self) -> float:
        now = max(self._clock(), self._latest)
        self._latest = now
        self._sweep(now, _SECONDS_SWEPT_PER_CALL)
        return now

    def _live(self, key: bytes, now: float) -> bytes | None:
        stored = self._markers.get(key)
        if stored is None or stored[1] <= now:
            return None
        return stored[0]

    def _file(self, key: bytes, value: bytes, now: float, ttl_seconds: float) -> None:
        old = self._markers.get(key)
        if old is None and len(self._markers) >= self._max_markers:
            # Full: reclaim everything already due before refusing.
            self._sweep(now, self._wheel.backlog(int(now)))
            if len(self._markers) >= self._max_markers:
                raise StoreUnavailable()
        expires_at = now + ttl_seconds
        if old is not None:
            if _bucket_second(old[1]) == _bucket_second(expires_at):
                self._markers[key] = (value, expires_at)
                return
            self._unfile(key, old[1])
        self._markers[key] = (value, expires_at)
        self._wheel.buckets.setdefault(_bucket_second(expires_at), set()).add(key)

    def _unfile(self, key: bytes, expires_at: float) -> None:
        bucket = self._wheel.buckets.get(_bucket_second(expires_at))
        if bucket is not None:
            bucket.discard(key)

    def _sweep(self, now: float, max_seconds: int) -> None:
        for bucket in self._wheel.due(int(now), max_seconds):
            for key in bucket:
                self._markers.pop(key, None)


def _bucket_second(expires_at: float) -> int:
    # Round up: a marker must never be swept before it has expired.
    return int(expires_at) + 1


def _integer(value: bytes) -> int | None:
    """`value` as an integer if it is one in canonical decimal form (as `advance` writes)."""
    try:
        number = int(value)
    except ValueError:
        return None
    return number if str(number).encode() == value else None
