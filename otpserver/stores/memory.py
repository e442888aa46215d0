"""In-process stores: the default for one worker, and the reference in tests.

Operations are plain dictionary steps with no `await` inside, so on one event loop they are
atomic without locks. Expiry never scans the whole table on a request: IDs are filed in
one-second buckets, and each call retires at most a few due buckets.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from otpserver.errors import StoreUnavailable
from otpserver.stores.base import Claim, ClaimOutcome, CounterStore, claim_in_steps
from otpserver.stores.counters import (
    ALWAYS,
    IF_ROOM,
    REFUSE,
    Counter,
    Decision,
    Window,
    charged,
    decide,
    live,
)

Clock = Callable[[], float]

_SECONDS_SWEPT_PER_CALL = 4
"""Bounded work per request. Wall time advances one bucket per second, so any traffic of
more than one request every few seconds keeps the cursor current."""


BucketT = TypeVar("BucketT")


class _ExpiryWheel(Generic[BucketT]):
    """Buckets of whatever expires in each second, handed back oldest first, a bounded
    number of seconds per call, so expiry never scans a table on a request."""

    __slots__ = ("buckets", "cursor")

    def __init__(self, cursor: int | None = None) -> None:
        self.buckets: dict[int, BucketT] = {}
        self.cursor = cursor
        """The next second to retire; None until the first call names one."""

    def due(self, second: int, max_seconds: int) -> list[BucketT]:
        """Remove and return the buckets of up to `max_seconds` seconds, up to `second`."""
        if self.cursor is None:
            self.cursor = second
        elif self.cursor > second:
            return []  # Swept up to `second` already: most calls end here.
        if self.cursor < second - max_seconds:
            # After an idle spell, jump straight to the oldest bucket: no bucket is ever
            # filed below the cursor, so every second in between is empty. This costs one
            # pass over the buckets (at most one per second of the longest lifetime).
            self.cursor = min(min(self.buckets, default=second), second)
        steps = 0
        due: list[BucketT] = []
        while self.cursor <= second and steps < max_seconds:
            bucket = self.buckets.pop(self.cursor, None)
            self.cursor += 1
            steps += 1
            if bucket is not None:
                due.append(bucket)
        return due

    def backlog(self, second: int) -> int:
        """Seconds to sweep to retire everything due by `second` (for a full store)."""
        return len(self.buckets) + max(0, second - (self.cursor or second)) + 1


class _Bucket(bytearray):
    """The IDs filed to expire in one second, each as its length (one byte: IDs are at most
    255 bytes, the core's 16) and raw bytes; `second` is shared by all of them."""

    __slots__ = ("second",)

    def __init__(self, second: int) -> None:
        super().__init__()
        self.second = second


class MemoryIdStore:
    """Live IDs with expiry, bounded to `max_ids` entries (beyond that: 503, fail closed).

    Consumption checks the expiry itself, so correctness never depends on the sweep; the
    sweep only gives memory back. The table maps each ID (as an int: 44 bytes, against 49
    for bytes) to its bucket's second, and each bucket is a bytearray of raw IDs. Neither
    holds an object the cyclic garbage collector tracks, so a full collection never walks
    the IDs: with a set per second it visited every live ID, a pause of half a second at a
    million. A consumed ID is only dropped from the table; its 17 bytes stay in its bucket
    until that second is swept, which skips IDs no longer filed for that second.
    """

    def __init__(self, max_ids: int = 2_000_000, clock: Clock = time.time) -> None:
        self._max_ids = max_ids
        self._clock = clock
        # ID as int -> its bucket's expiry second.
        self._expiry: dict[int, int] = {}
        self._wheel: _ExpiryWheel[_Bucket] = _ExpiryWheel(int(clock()))

    def __len__(self) -> int:
        return len(self._expiry)

    async def add(self, list_id: bytes, ttl_seconds: float) -> bool:
        now = self._clock()
        self._sweep(now, _SECONDS_SWEPT_PER_CALL)
        return self._add(list_id, now, ttl_seconds)

    async def consume(self, list_id: bytes) -> bool:
        now = self._clock()
        self._sweep(now, _SECONDS_SWEPT_PER_CALL)
        return self._consume(int.from_bytes(list_id, "big"), now)

    async def claim(self, claim: Claim, counters: CounterStore, now_ms: int) -> ClaimOutcome:
        """The claim's steps in order: on one event loop nothing else runs in between,
        since neither store ever waits inside an operation."""
        return await claim_in_steps(self, counters, claim, now_ms)

    async def rotate(self, old_id: bytes, new_id: bytes, ttl_seconds: float) -> bool:
        now = self._clock()
        self._sweep(now, _SECONDS_SWEPT_PER_CALL)
        if not self._consume(int.from_bytes(old_id, "big"), now):
            return False
        return self._add(new_id, now, ttl_seconds)

    async def aclose(self) -> None:
        self._expiry.clear()
        self._wheel.buckets.clear()

    def _add(self, list_id: bytes, now: float, ttl_seconds: float) -> bool:
        key = int.from_bytes(list_id, "big")
        previous = self._expiry.get(key)
        if previous is not None and previous > now:
            return False
        if len(self._expiry) >= self._max_ids:
            # Full: reclaim everything already due (at most one bucket per second of the
            # longest lifetime) before refusing.
            self._sweep(now, self._wheel.backlog(int(now)))
            if len(self._expiry) >= self._max_ids:
                raise StoreUnavailable()
        # Round up: an ID must never expire before the cookie that carries it.
        second = int(now + ttl_seconds) + 1
        buckets = self._wheel.buckets
        bucket = buckets.get(second)
        if bucket is None:
            bucket = buckets[second] = _Bucket(second)
        bucket.append(len(list_id))
        bucket += list_id
        self._expiry[key] = bucket.second
        return True

    def _consume(self, key: int, now: float) -> bool:
        second = self._expiry.pop(key, None)
        return second is not None and second > now

    def _sweep(self, now: float, max_seconds: int) -> None:
        for bucket in self._wheel.due(int(now), max_seconds):
            self._retire(bucket)

    def _retire(self, bucket: _Bucket) -> None:
        """Drop the IDs still filed for `bucket`'s second; the rest were consumed or filed
        again (a rolled-back delivery) and are no longer this bucket's to drop."""
        expiry, second, start = self._expiry, bucket.second, 0
        while start < len(bucket):
            end = start + 1 + bucket[start]
            key = int.from_bytes(bucket[start + 1 : end], "big")
            if expiry.get(key) == second:
                del expiry[key]
            start = end


class MemoryKeyStore:
    """Wrapped KEKs in a dictionary, with expiry checked on read."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._keys: dict[int, tuple[bytes, float]] = {}

    async def get_or_create(self, key_id: int, candidate: bytes, ttl_seconds: float) -> bytes:
        now = self._clock()
        stored = self._keys.get(key_id)
        if stored is not None and stored[1] > now:
            return stored[0]
        self._keys[key_id] = (candidate, now + ttl_seconds)
        # A handful of keys live at once; dropping expired ones here keeps it that way.
        for old in [k for k, (_, expires_at) in self._keys.items() if expires_at <= now]:
            del self._keys[old]
        return candidate

    async def get(self, key_id: int) -> bytes | None:
        stored = self._keys.get(key_id)
        if stored is None or stored[1] <= self._clock():
            return None
        return stored[0]

    async def delete(self, key_id: int) -> None:
        self._keys.pop(key_id, None)

    async def aclose(self) -> None:
        self._keys.clear()


class MemoryCounterStore:
    """Abuse-limit counters in a dictionary, bounded to `max_counters` keys.

    Past the bound, a counter's `when_full` decides: a send fails closed (503), a
    verification skips its per-address counts, and failure counts are always filed.

    A charge reads and writes every counter without an `await` in between, which makes it
    atomic on the event loop. Expired counts are ignored when read, so correctness never
    depends on the sweep; like the ID store, the sweep retires a few one-second buckets per
    call and only gives memory back. Time never runs backwards here: a request that read
    the clock before an `await` is judged at the latest instant already seen, so no count is
    filed in a bucket the sweep has passed.
    """

    def __init__(self, max_counters: int = 1_000_000) -> None:
        self._max_counters = max_counters
        self._windows: dict[bytes, Window] = {}
        self._wheel: _ExpiryWheel[set[bytes]] = _ExpiryWheel()
        self._latest_ms = 0

    def __len__(self) -> int:
        return len(self._windows)

    async def hit(self, counters: Sequence[Counter], now_ms: int) -> Decision:
        if now_ms < self._latest_ms:
            now_ms = self._latest_ms
        self._latest_ms = now_ms
        self._sweep(now_ms // 1000, _SECONDS_SWEPT_PER_CALL)
        get = self._windows.get
        windows = [get(c.key) for c in counters]
        decision = decide(counters, windows, now_ms)
        if not decision.allowed:
            return decision
        skipped: frozenset[int] = frozenset()
        # Counting the keys this charge would add only matters near the bound.
        if len(self._windows) + len(counters) > self._max_counters:
            skipped = self._make_room(counters, windows, now_ms)
        for index, (counter, stored) in enumerate(zip(counters, windows, strict=True)):
            if counter.cost and index not in skipped:
                self._file(counter.key, stored, charged(counter, stored, now_ms))
        return decision

    def _make_room(
        self, counters: Sequence[Counter], windows: Sequence[Window | None], now_ms: int
    ) -> frozenset[int]:
        """Which new keys to leave out so the table stays within its bound, or raise
        `StoreUnavailable` when even that is not enough for the counters that refuse.

        Failure counts (`ALWAYS`) are filed past the bound: they come only from
        verifications, each of which needed a code sent, so the send limits bound them, and
        dropping one would hand an attacker fresh guesses.
        """
        new = [
            index
            for index, (c, w) in enumerate(zip(counters, windows, strict=True))
            if c.cost and c.when_full != ALWAYS and live(w, now_ms) is None
        ]
        if not new or len(self._windows) + len(new) <= self._max_counters:
            return frozenset()
        # Full: reclaim everything already due before leaving anything out.
        self._sweep(now_ms // 1000, self._wheel.backlog(now_ms // 1000))
        if len(self._windows) + len(new) <= self._max_counters:
            return frozenset()
        required = [i for i in new if counters[i].when_full == REFUSE]
        if required and len(self._windows) + len(required) > self._max_counters:
            raise StoreUnavailable()
        return frozenset(i for i in new if counters[i].when_full == IF_ROOM)

    async def reset(self, keys: Sequence[bytes]) -> None:
        for key in keys:
            self._file(key, self._windows.get(key), None)

    async def aclose(self) -> None:
        self._windows.clear()
        self._wheel.buckets.clear()

    def _file(self, key: bytes, old: Window | None, new: Window | None) -> None:
        """Replace `key`'s window, moving it to the bucket of the second it expires in."""
        if old is not None and new is not None and new.resets_at_ms == old.resets_at_ms:
            self._windows[key] = new  # Same expiry: already in the right bucket.
            return
        if old is not None:
            bucket = self._wheel.buckets.get(_bucket_second(old))
            if bucket is not None:
                bucket.discard(key)
        if new is None:
            self._windows.pop(key, None)
            return
        self._windows[key] = new
        self._wheel.buckets.setdefault(_bucket_second(new), set()).add(key)

    def _sweep(self, due: int, max_seconds: int) -> None:
        for bucket in self._wheel.due(due, max_seconds):
            for key in bucket:
                self._windows.pop(key, None)


def _bucket_second(window: Window) -> int:
    # Round up: a count must never be swept before its window has ended.
    return window.resets_at_ms // 1000 + 1
