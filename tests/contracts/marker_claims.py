"""The `MarkerStore.claim` contract as a test class to subclass once per store pairing.

A marker claim is the one store step of a TOTP verification or a backup-code redemption
(`otpserver.stores.base.MarkerClaim`); a gated read (`MarkerStore.read`) is a trusted-device
check's. To check a marker store of your own, subclass
`MarkerClaimContract` in a `test_*.py` file under a name starting with `Test`, and give it
a `stores` fixture that yields a fresh, empty marker store and the counter store it is
deployed with. Every test below then runs against that pairing; `tests/test_markers.py`
does it for memory, every Redis deployment, and markers and counters kept apart.
Instants are passed in (`now_ms`) and every marker lives far longer than a test, so no
time needs to pass.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from otpserver.stores.base import (
    SUPERSEDED,
    CounterStore,
    MarkerAdvance,
    MarkerClaim,
    MarkerOutcome,
    MarkerPut,
    MarkerRead,
    MarkerStore,
)
from otpserver.stores.counters import ALLOWED, Counter, Decision

NOW = 1_800_000_000_000
WINDOW_MS = 900_000

Stores = tuple[MarkerStore, CounterStore]


def failures(key: bytes, limit: int = 3) -> Counter:
    """A failure counter as the second factors charge one: no extra lock, refused at `limit`."""
    return Counter("test_failures", key, limit, WINDOW_MS)


def new_key() -> bytes:
    return secrets.token_bytes(32)


def advance(key: bytes, step: int) -> MarkerAdvance:
    return MarkerAdvance(key=key, value=step, ttl_seconds=120)


def put(key: bytes) -> MarkerPut:
    return MarkerPut(key=key, value=b"1", ttl_seconds=3600)


async def count_left(counters: CounterStore, counter: Counter) -> int:
    """How many more charges `counter` takes before it refuses (charging it to the limit)."""
    left = 0
    while (await counters.hit([counter], NOW)).allowed:
        left += 1
    return left


class MarkerClaimContract:
    """What every marker store pairing guarantees of `claim`; not collected itself."""

    @pytest.fixture
    async def stores(self) -> AsyncIterator[Stores]:
        """A fresh marker store and its counter store (a subclass provides them)."""
        raise NotImplementedError("subclass MarkerClaimContract and define `stores`")
        yield  # noqa: PT022 -- an async generator, so subclasses' overrides type-check

    async def test_a_read_answers_each_named_marker_in_order(self, stores: Stores) -> None:
        """Live values where there are markers, None where there are none; no gate, no charge."""
        markers, counters = stores
        first, missing, last = new_key(), new_key(), new_key()
        await markers.put(first, b"1800000000000", 3600)
        await markers.put(last, b"1", 3600)
        read = await markers.read((first, missing, last), None, counters, NOW)
        assert read == MarkerRead((b"1800000000000", None, b"1"))

    async def test_a_read_charges_its_gate_first_and_reads_nothing_once_refused(
        self, stores: Stores
    ) -> None:
        """The gate is charged in the read's step; past its limit the read says so and
        hands back no value."""
        markers, counters = stores
        gate, key = failures(new_key(), limit=1), new_key()
        await markers.put(key, b"7", 3600)
        assert await markers.read((key,), gate, counters, NOW) == MarkerRead((b"7",))
        refused = await markers.read((key,), gate, counters, NOW)
        assert refused.values == ()
        assert not refused.gate.allowed
        assert 0 < refused.gate.retry_after_ms <= WINDOW_MS

    async def test_a_taken_advance_clears_the_failures(self, stores: Stores) -> None:
        """A right code's step is stored and its credential's failure count starts over."""
        markers, counters = stores
        counter, key = failures(new_key()), new_key()
        await counters.hit([counter], NOW)
        await counters.hit([counter], NOW)
        claim = MarkerClaim(take=advance(key, 7), failures=(counter,))
        assert await markers.claim(claim, counters, NOW) == MarkerOutcome(True, ALLOWED)
        assert await markers.get(key) == b"7"
        assert await count_left(counters, counter) == 3

    async def test_a_replayed_step_is_not_taken_and_counts_as_a_failure(
        self, stores: Stores
    ) -> None:
        """An equal or older step loses, stores nothing and charges the failure count."""
        markers, counters = stores
        counter, key = failures(new_key()), new_key()
        assert await markers.advance(key, 7, 120)
        for step in (7, 6):
            claim = MarkerClaim(take=advance(key, step), failures=(counter,))
            assert await markers.claim(claim, counters, NOW) == MarkerOutcome(False, ALLOWED)
        assert await markers.get(key) == b"7"
        assert await count_left(counters, counter) == 1

    async def test_a_claim_with_nothing_to_take_only_charges(self, stores: Stores) -> None:
        """A code that matched nothing: one failure charged per claim, until the lockout."""
        markers, counters = stores
        counter = failures(new_key(), limit=2)
        wrong = MarkerClaim(take=None, failures=(counter,))
        assert await markers.claim(wrong, counters, NOW) == MarkerOutcome(False, ALLOWED)
        assert await markers.claim(wrong, counters, NOW) == MarkerOutcome(False, ALLOWED)
        locked = await markers.claim(wrong, counters, NOW + 1000)
        assert locked == MarkerOutcome(False, Decision(False, WINDOW_MS - 1000, (0,)))

    async def test_a_locked_credential_takes_nothing(self, stores: Stores) -> None:
        """At the limit even a right code is refused, and its step stays free for later."""
        markers, counters = stores
        counter, key = failures(new_key(), limit=1), new_key()
        await counters.hit([counter], NOW)
        right = MarkerClaim(take=advance(key, 9), failures=(counter,))
        locked = await markers.claim(right, counters, NOW)
        assert locked == MarkerOutcome(False, Decision(False, WINDOW_MS, (0,)))
        assert await markers.get(key) is None
        later = await markers.claim(right, counters, NOW + WINDOW_MS)
        assert later == MarkerOutcome(True, ALLOWED)
        assert await markers.get(key) == b"9"

    async def test_a_put_is_taken_once(self, stores: Stores) -> None:
        """A spent-code marker is created by the first claim; the next one loses and charges."""
        markers, counters = stores
        counter, key = failures(new_key()), new_key()
        claim = MarkerClaim(take=put(key), failures=(counter,))
        assert await markers.claim(claim, counters, NOW) == MarkerOutcome(True, ALLOWED)
        assert await markers.claim(claim, counters, NOW) == MarkerOutcome(False, ALLOWED)
        assert await markers.get(key) == b"1"
        assert await count_left(counters, counter) == 2

    async def test_a_newer_not_before_marker_supersedes_and_changes_nothing(
        self, stores: Stores
    ) -> None:
        """Any named marker holding a later instant refuses the claim before the lockout:
        no charge, no take. An equal instant, a non-numeric value or no marker let it on."""
        markers, counters = stores
        counter, key = failures(new_key(), limit=1), new_key()
        older, newer, text, missing = new_key(), new_key(), new_key(), new_key()
        await markers.put(older, str(NOW - 5).encode(), 3600)
        await markers.put(newer, str(NOW + 5).encode(), 3600)
        await markers.put(text, b"later", 3600)
        superseded = MarkerClaim(
            take=put(key), failures=(counter,), not_before=(older, newer), issued_at_ms=NOW
        )
        assert await markers.claim(superseded, counters, NOW) == SUPERSEDED
        assert await markers.get(key) is None
        current = MarkerClaim(
            take=put(key),
            failures=(counter,),
            not_before=(older, text, missing),
            issued_at_ms=NOW - 5,
        )
        assert await markers.claim(current, counters, NOW) == MarkerOutcome(True, ALLOWED)
        assert await count_left(counters, counter) == 1

    async def test_a_superseded_claim_wins_over_a_lockout(self, stores: Stores) -> None:
        """Superseded is decided first: a locked subject's old set still reads as superseded."""
        markers, counters = stores
        counter, newer = failures(new_key(), limit=1), new_key()
        await counters.hit([counter], NOW)
        await markers.put(newer, str(NOW).encode(), 3600)
        claim = MarkerClaim(
            take=None, failures=(counter,), not_before=(newer,), issued_at_ms=NOW - 1
        )
        assert await markers.claim(claim, counters, NOW) == SUPERSEDED

    async def test_parallel_claims_of_one_step_take_it_once(self, stores: Stores) -> None:
        """Of 30 concurrent claims of one step exactly one takes it; every other one is
        evaluated as a failure, never locked below the limit."""
        markers, counters = stores
        counter, key = failures(new_key(), limit=100), new_key()
        claim = MarkerClaim(take=advance(key, 5), failures=(counter,))
        outcomes = await asyncio.gather(*(markers.claim(claim, counters, NOW) for _ in range(30)))
        assert [o.taken for o in outcomes].count(True) == 1
        assert all(o.decision.allowed for o in outcomes)
        assert await markers.get(key) == b"5"

    async def test_a_right_code_racing_wrong_ones_keeps_the_lockout(self, stores: Stores) -> None:
        """Ten copies of a right code race thirty wrong codes at once. Whatever the order,
        the outcomes are those of some serial order: at most one copy is taken; if none is,
        every copy was locked out, exactly the limit of failures was evaluated, and the
        credential stays locked; if one is, it cleared at most the limit minus one failures
        (those before it), and every failure after it still counts."""
        markers, counters = stores
        limit = 5
        counter, key = failures(new_key(), limit=limit), new_key()
        right = MarkerClaim(take=advance(key, 11), failures=(counter,))
        wrong = MarkerClaim(take=None, failures=(counter,))
        claims = [right] * 10 + [wrong] * 30
        outcomes = await asyncio.gather(*(markers.claim(c, counters, NOW) for c in claims))
        rights, wrongs = outcomes[:10], outcomes[10:]
        taken = [o for o in rights if o.taken]
        charged = sum(o.decision.allowed and not o.taken for o in outcomes)
        assert len(taken) <= 1
        assert all(o.decision.allowed for o in taken)
        assert not any(o.taken for o in wrongs)
        still_counted = limit - await count_left(counters, counter)
        if taken:
            assert charged - still_counted <= limit - 1
        else:
            assert all(not o.decision.allowed for o in rights)
            assert await markers.get(key) is None
            assert charged == still_counted == limit
