"""Test doubles for the hooks: an injected clock and a sender that records what it sends."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from otpserver.delivery.message import DeliveryError, OutgoingCode
from otpserver.stores.counters import Counter, Decision

START = 1_800_000_000.0
"""A fixed instant (2027-01-15) so tests never depend on the wall clock."""


@dataclass
class FakeClock:
    """A clock that only moves when a test says so."""

    now: float = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class RecordingSender:
    """Keeps every message; can be told to fail, like a provider outage."""

    development_only: bool = False
    sent: list[OutgoingCode] = field(default_factory=list)
    fail_with: str | None = None

    async def send(self, message: OutgoingCode) -> None:
        if self.fail_with is not None:
            raise DeliveryError(self.fail_with)
        self.sent.append(message)

    @property
    def last_code(self) -> str:
        return self.sent[-1].code


class AllowAll:
    """A counter store that allows everything without any I/O: the server without limits."""

    async def hit(self, counters: Sequence[Counter], now_ms: int) -> Decision:
        return Decision(allowed=True)

    async def reset(self, keys: Sequence[bytes]) -> None:
        return None

    async def aclose(self) -> None:
        return None
