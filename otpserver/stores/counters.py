"""Counter arithmetic every counter store shares: what a charge decides, and what it leaves behind.

Pure: instants are whole milliseconds passed in as `now_ms`. The memory store calls these
functions; the Redis store mirrors them in Lua, and the contract suite holds both to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

WhenFull = Literal["refuse", "skip", "always"]
REFUSE: WhenFull = "refuse"
"""A store with no room for this counter's new key refuses the request (503, fail closed)."""
IF_ROOM: WhenFull = "skip"
"""A store with no room files the rest of the request's counters without this new one:
for counts bounded by other counters, which must not block the request."""
ALWAYS: WhenFull = "always"
"""Filed even past a store's bound: a count whose loss would weaken a limit (failures)."""


class Counter(NamedTuple):
    """One allowance a request draws on: a store key, its limit and this request's cost.

    `cost` is 1 to charge, or 0 to only check (a lockout consulted by a send). `kind`
    names the rule for logs; it never reaches the store. `when_full` tells a store with a
    bounded table what to do when this counter needs a new key and there is no room; a
    store that is not bounded by itself ignores it. Keys of one request are distinct.
    """

    kind: str
    key: bytes
    limit: int
    window_ms: int
    lock_ms: int = 0
    cost: int = 1
    when_full: WhenFull = REFUSE


class Window(NamedTuple):
    """A counter's stored state: hits so far and the instant (ms) the count starts over."""

    hits: int
    resets_at_ms: int


class Decision(NamedTuple):
    """The outcome of one charge: allowed, or refused until `retry_after_ms` from now.

    `refused` holds the indexes of the counters that said no, for logs only.
    """

    allowed: bool
    retry_after_ms: int = 0
    refused: tuple[int, ...] = ()


ALLOWED = Decision(allowed=True)


def live(window: Window | None, now_ms: int) -> Window | None:
    """`window`, unless it has run out (an expired count is no count)."""
    return window if window is not None and window.resets_at_ms > now_ms else None


def decide(counters: Sequence[Counter], windows: Sequence[Window | None], now_ms: int) -> Decision:
    """Allowed only if every counter has room for one more hit; else wait for the last."""
    if len(windows) != len(counters):
        raise ValueError("one stored window (or None) per counter")
    refused: list[int] = []
    until = now_ms
    # Every request runs this, so `live` is spelled out inline rather than called.
    for index, counter in enumerate(counters):
        window = windows[index]
        if window is not None and window.resets_at_ms > now_ms:
            if window.hits >= counter.limit:
                refused.append(index)
                until = max(until, window.resets_at_ms)
        elif counter.limit <= 0:
            refused.append(index)
            until = max(until, now_ms + counter.window_ms)
    if refused:
        return Decision(False, until - now_ms, tuple(refused))
    return ALLOWED


def charged(counter: Counter, stored: Window | None, now_ms: int) -> Window:
    """The window after `counter` is charged at `now_ms` (call only when `decide` allowed)."""
    if stored is not None and stored.resets_at_ms > now_ms:
        count, resets_at_ms = stored.hits + counter.cost, stored.resets_at_ms
    else:
        count, resets_at_ms = counter.cost, now_ms + counter.window_ms
    if counter.lock_ms and count >= counter.limit:
        resets_at_ms = now_ms + counter.lock_ms
    return Window(count, resets_at_ms)


def retry_after_seconds(decision: Decision) -> int:
    """Whole seconds for `Retry-After`, rounded up so a client never comes back too early."""
    return max(1, -(-decision.retry_after_ms // 1000))
