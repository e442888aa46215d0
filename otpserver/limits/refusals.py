"""What one worker remembers of recent refusals, so a refused client costs less than a served one.

A create whose credential fails validation is charged against its address like any other
(`rules.refused_counters`). Once that charge is refused, the address is over its request
allowance until a known instant, and every create from it would be refused there too; this
memo answers those at once, before the credential schema (a costly validator for long
internationalised addresses) or the store is asked. It only ever refuses what the store
would refuse: the store stays the authority, and the memo forgets at the instant the
store's window ends.
"""

from __future__ import annotations

MAX_REMEMBERED = 10_000
"""Addresses remembered per worker; past it the oldest entry is forgotten (the store still
refuses it, at the usual cost)."""


class RefusalMemo:
    """Limit buckets refused until an instant (ms), bounded, oldest forgotten first."""

    __slots__ = ("_max_entries", "_until_ms")

    def __init__(self, max_entries: int = MAX_REMEMBERED) -> None:
        self._until_ms: dict[str, int] = {}
        self._max_entries = max_entries

    def __len__(self) -> int:
        return len(self._until_ms)

    def wait_ms(self, bucket: str, now_ms: int) -> int:
        """How long `bucket` is still refused, 0 when it is not (or no longer) remembered."""
        until = self._until_ms.get(bucket)
        if until is None:
            return 0
        if until <= now_ms:
            del self._until_ms[bucket]
            return 0
        return until - now_ms

    def remember(self, bucket: str, until_ms: int) -> None:
        """Refuse `bucket` until `until_ms`."""
        self._until_ms.pop(bucket, None)
        if len(self._until_ms) >= self._max_entries:
            # Dictionaries keep insertion order: the first key is the oldest refusal.
            del self._until_ms[next(iter(self._until_ms))]
        self._until_ms[bucket] = until_ms
