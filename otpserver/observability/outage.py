"""Store outages, logged once when they start and once when they end, never per request.

Every call to a shared store reports here (`StoreCalls.failed` / `answered`); the first
failure opens an outage with the error behind it, the next answer closes it with how long
it lasted and how many requests were refused meanwhile. Each process keeps its own record,
so with several workers each logs its own view of the same outage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from otpserver.observability import audit, metrics

log = logging.getLogger("otpserver.store")

T = TypeVar("T")


class StoreCalls:
    """The state of the store as this process's calls find it: up, or down since when."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._down_since: float | None = None
        self._refused = 0
        self._last_error = ""

    @property
    def last_error(self) -> str:
        """The error behind the latest failure, for a start-up that gives up waiting."""
        return self._last_error

    @property
    def down(self) -> bool:
        """True between a failed call and the next answered one."""
        return self._down_since is not None

    async def timed(self, call: Awaitable[T]) -> T:
        """Await one store call, reporting its answer or its failure (not a cancellation:
        a request given up by its client says nothing about the store)."""
        started = time.perf_counter()
        try:
            result = await call
        except Exception as error:
            self.failed(error, time.perf_counter() - started)
            raise
        self.answered(time.perf_counter() - started)
        return result

    def failed(self, error: BaseException, seconds: float) -> None:
        """A call failed after `seconds`; the first failure of an outage is logged."""
        metrics.store_failed(_error_kind(error))
        self._last_error = (
            f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        )
        if self._down_since is not None:
            return
        self._down_since = self._clock()
        self._refused = 0
        log.error("store unavailable: %s; answering 503 until it is back", self._last_error)
        audit.emit("store.unavailable", error=type(error).__name__)

    def answered(self, seconds: float) -> None:
        """A call got its answer in `seconds`; the first after an outage logs its end."""
        metrics.store_answered(seconds)
        if self._down_since is None:
            return
        lasted = self._clock() - self._down_since
        refused, self._down_since, self._refused = self._refused, None, 0
        log.warning(
            "store available again after %.1f s; %d request(s) refused meanwhile", lasted, refused
        )

    def refused(self) -> None:
        """A request was answered 503 because the store could not be reached."""
        if self._down_since is not None:
            self._refused += 1


def _error_kind(error: BaseException) -> str:
    """A bounded label: timeouts, connection failures, and everything else."""
    if isinstance(error, TimeoutError) or type(error).__name__ == "TimeoutError":
        return "timeout"
    if isinstance(error, (ConnectionError, OSError)) or "Connection" in type(error).__name__:
        return "connection"
    return "error"


STORE = StoreCalls()
"""This process's record; the Redis stores report every call to it."""
