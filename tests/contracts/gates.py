"""The gate of a claim as a test class to subclass once per store pairing.

A gate is the calling API key's allowance, charged first in the very store step a request
makes anyway (`Claim.gate`, `MarkerClaim.gate`), so the key costs no round trip of its own.
To check a pairing of your own, subclass `GateContract` in a `test_*.py` file under a name
starting with `Test`, and give it a `stores` fixture that yields a fresh ID store, marker
store and the counter store deployed with them; `tests/test_store_gates.py` does it for
memory, every Redis deployment, and counters kept apart. Instants are passed in and every
ID and marker lives far longer than a test, so no time needs to pass.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Literal

import pytest

from otpserver.stores.base import (
    Claim,
    CounterStore,
    IdStore,
    MarkerClaim,
    MarkerPut,
    MarkerStore,
)
from otpserver.stores.counters import Counter

NOW = 1_800_000_000_000
MINUTE = 60_000

Stores = tuple[IdStore, MarkerStore, CounterStore]
Order = Literal["charge_first", "spend_first"]


def new_key() -> bytes:
    return secrets.token_bytes(16)


def allowance(limit: int) -> Counter:
    """A gate as an API key's allowance is one: `limit` requests a minute."""
    return Counter("api_key", new_key(), limit, MINUTE)


def limit(left: int) -> Counter:
    """Another limit of the step, with room for `left` more charges."""
    return Counter("test", new_key(), left, MINUTE)


async def count_left(counters: CounterStore, counter: Counter) -> int:
    """How many more charges `counter` takes before it refuses (charging it to the limit)."""
    left = 0
    while (await counters.hit([counter], NOW)).allowed:
        left += 1
    return left


async def spend_up(counters: CounterStore, gate: Counter) -> None:
    """Charge `gate` to its limit, as a key that made all its requests this minute."""
    while (await counters.hit([gate], NOW)).allowed:
        pass


class GateContract:
    """What every store pairing guarantees of a claim's gate; not collected itself."""

    @pytest.fixture
    async def stores(self) -> AsyncIterator[Stores]:
        """Fresh ID, marker and counter stores (a subclass provides them)."""
        raise NotImplementedError("subclass GateContract and define `stores`")
        yield  # noqa: PT022 -- an async generator, so subclasses' overrides type-check

    @pytest.mark.parametrize("order", ["charge_first", "spend_first"])
    async def test_a_refused_gate_changes_no_id_and_charges_nothing(
        self, stores: Stores, order: Order
    ) -> None:
        """Past the key's limit, the step spends nothing, files nothing, charges nothing."""
        ids, _, counters = stores
        gate, other = allowance(2), limit(3)
        await spend_up(counters, gate)
        held, successor = new_key(), new_key()
        assert await ids.add(held, 600)
        claim = Claim(
            order=order,
            spend=held,
            file=successor,
            ttl_seconds=600,
            counters=(other,),
            resets=(),
            gate=gate,
        )
        outcome = await ids.claim(claim, counters, NOW)
        assert not outcome.claimed
        assert not outcome.gate.allowed
        assert 0 < outcome.gate.retry_after_ms <= MINUTE
        assert await count_left(counters, other) == 3
        assert not await ids.consume(successor)
        assert await ids.consume(held)

    async def test_a_refused_gate_leaves_the_failures_to_reset(self, stores: Stores) -> None:
        """A right code behind a refused gate clears no failure count."""
        ids, _, counters = stores
        gate, failures = allowance(1), limit(3)
        await counters.hit([failures], NOW)
        await spend_up(counters, gate)
        held = new_key()
        await ids.add(held, 600)
        claim = Claim(
            order="spend_first",
            spend=held,
            file=new_key(),
            ttl_seconds=600,
            counters=(),
            resets=(failures.key,),
            gate=gate,
        )
        assert not (await ids.claim(claim, counters, NOW)).gate.allowed
        assert await count_left(counters, failures) == 2

    @pytest.mark.parametrize("order", ["charge_first", "spend_first"])
    async def test_an_allowed_gate_is_charged_once_whatever_the_rest_decides(
        self, stores: Stores, order: Order
    ) -> None:
        """Won, lost or refused by another limit: the key's allowance goes down by one."""
        ids, _, counters = stores
        won, lost, refused = allowance(5), allowance(5), allowance(5)
        held = new_key()
        await ids.add(held, 600)
        for gate, spend, other in (
            (won, held, limit(1)),
            (lost, new_key(), limit(1)),
            (refused, new_key(), limit(0)),
        ):
            claim = Claim(
                order=order,
                spend=spend,
                file=new_key(),
                ttl_seconds=600,
                counters=(other,),
                gate=gate,
            )
            outcome = await ids.claim(claim, counters, NOW)
            assert outcome.gate.allowed
            assert await count_left(counters, gate) == 4
        assert not await ids.consume(held)

    @pytest.mark.parametrize("order", ["charge_first", "spend_first"])
    async def test_racing_claims_never_pass_the_gate_more_often_than_its_limit(
        self, stores: Stores, order: Order
    ) -> None:
        """Thirty requests at once on a key with room for five: five steps run, and only
        those charge the step's other limit."""
        ids, _, counters = stores
        gate, other = allowance(5), limit(100)
        held = [new_key() for _ in range(30)]
        for list_id in held:
            await ids.add(list_id, 600)
        claims = [
            Claim(
                order=order,
                spend=list_id,
                file=new_key(),
                ttl_seconds=600,
                counters=(other,),
                gate=gate,
            )
            for list_id in held
        ]
        outcomes = await asyncio.gather(*(ids.claim(c, counters, NOW) for c in claims))
        passed = [o for o in outcomes if o.gate.allowed]
        assert len(passed) == 5
        assert all(o.claimed for o in passed)
        assert not any(o.claimed for o in outcomes if not o.gate.allowed)
        assert await count_left(counters, other) == 95
        spent = [not await ids.consume(list_id) for list_id in held]
        assert spent.count(True) == 5

    async def test_a_refused_gate_takes_no_marker_and_charges_no_failure(
        self, stores: Stores
    ) -> None:
        """Past the key's limit, a second-factor step takes nothing and counts no guess."""
        _, markers, counters = stores
        gate, failures, marker = allowance(2), limit(3), new_key()
        await spend_up(counters, gate)
        claim = MarkerClaim(take=MarkerPut(marker, b"1", 600), failures=(failures,), gate=gate)
        outcome = await markers.claim(claim, counters, NOW)
        assert not outcome.taken
        assert not outcome.superseded
        assert not outcome.gate.allowed
        assert await markers.get(marker) is None
        assert await count_left(counters, failures) == 3

    async def test_an_allowed_marker_gate_is_charged_once(self, stores: Stores) -> None:
        """Taken, lost, superseded or locked out: the key's allowance goes down by one."""
        _, markers, counters = stores
        marker, newer = new_key(), new_key()
        await markers.put(newer, str(NOW).encode(), 600)
        cases = [
            MarkerClaim(take=MarkerPut(marker, b"1", 600), failures=(limit(3),)),
            MarkerClaim(take=MarkerPut(marker, b"1", 600), failures=(limit(3),)),
            MarkerClaim(take=None, failures=(limit(0),)),
            MarkerClaim(take=None, failures=(), not_before=(newer,), issued_at_ms=NOW - 1),
        ]
        taken = []
        for case in cases:
            gate = allowance(5)
            gated = MarkerClaim(
                take=case.take,
                failures=case.failures,
                not_before=case.not_before,
                issued_at_ms=case.issued_at_ms,
                gate=gate,
            )
            outcome = await markers.claim(gated, counters, NOW)
            assert outcome.gate.allowed
            taken.append(outcome.taken)
            assert await count_left(counters, gate) == 4
        assert taken == [True, False, False, False]

    async def test_racing_marker_claims_never_pass_the_gate_more_often_than_its_limit(
        self, stores: Stores
    ) -> None:
        """Thirty second-factor steps at once on a key with room for five: five run."""
        _, markers, counters = stores
        gate, failures = allowance(5), limit(100)
        names = [new_key() for _ in range(30)]
        claims = [
            MarkerClaim(take=MarkerPut(name, b"1", 600), failures=(failures,), gate=gate)
            for name in names
        ]
        outcomes = await asyncio.gather(*(markers.claim(c, counters, NOW) for c in claims))
        assert sum(o.gate.allowed for o in outcomes) == 5
        assert sum(o.taken for o in outcomes) == 5
        assert sum([await markers.get(name) is not None for name in names]) == 5
        # Each taken marker cleared the shared failure count it had charged.
        assert await count_left(counters, failures) == 100
