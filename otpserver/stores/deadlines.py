"""One timer for the deadlines of every call in flight, instead of one timer per call.

Each Redis store call must end within `OTP_STORE_TIMEOUT_SECONDS`. `asyncio.timeout` arms
and cancels a loop timer per call; on uvloop that is a libuv timer allocated, started,
stopped and closed again, about a sixth of a fused limit call's instructions. Here the
calls in flight are listed with their deadlines, and one timer, armed only while the list
is not empty, cancels whichever call has passed its own. A call then ends between its
deadline and one tick later (`TICKS_PER_LIMIT`).

The cancellation semantics are `asyncio.timeout`'s: a call cut off here raises
`TimeoutError`; a cancellation from anywhere else still arrives as `CancelledError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")

TICKS_PER_LIMIT = 8
"""How often per time limit the timer looks: a call ends at most an eighth late."""


class SharedDeadline:
    """Bounds every call made through `run` to `limit_seconds`, with one timer for all."""

    def __init__(self, limit_seconds: float) -> None:
        self.limit_seconds = limit_seconds
        self._tick_seconds = limit_seconds / TICKS_PER_LIMIT
        # One token per call in flight: its task and deadline, and whether it was cut off.
        self._running: dict[object, tuple[asyncio.Task[Any], float]] = {}
        self._expired: set[object] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def armed(self) -> bool:
        """Whether the timer is set (only while a call is in flight, or one tick after)."""
        return self._timer is not None

    async def run(self, operation: Awaitable[T]) -> T:
        """Await `operation`, or raise `TimeoutError` once it outlives the limit."""
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline needs a task to cancel")
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # A new event loop (a test's, or a second `asyncio.run` in one process): what
            # was listed belonged to the old one and can never finish there.
            self._loop, self._timer = loop, None
            self._running.clear()
            self._expired.clear()
        token = object()
        cancelling = task.cancelling()
        self._running[token] = (task, loop.time() + self.limit_seconds)
        if self._timer is None:
            self._timer = loop.call_later(self._tick_seconds, self._check)
        try:
            return await operation
        except asyncio.CancelledError:
            if token in self._expired and task.uncancel() <= cancelling:
                raise TimeoutError from None
            raise
        finally:
            # No await between the operation's end and here, so the timer can only ever
            # cancel this task while it waits inside `operation`.
            del self._running[token]
            self._expired.discard(token)

    def _check(self) -> None:
        loop = self._loop
        assert loop is not None  # noqa: S101 -- armed only after a loop was recorded  # nosec B101
        now = loop.time()
        for token, (task, deadline) in self._running.items():
            if deadline <= now and token not in self._expired:
                self._expired.add(token)
                task.cancel()
        self._timer = loop.call_later(self._tick_seconds, self._check) if self._running else None
