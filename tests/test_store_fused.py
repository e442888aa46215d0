"""One claim, one step: an ID change and a limit charge, in the order the claim names.

Every store pairing runs the same checks: IDs and counters in memory, both in one Redis
(one script, one round trip), and counters kept elsewhere (the steps one call each).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis

from otpserver.stores import (
    MemoryCounterStore,
    MemoryIdStore,
    RedisCounterStore,
    RedisIdStore,
    redis_client,
)
from otpserver.stores.base import Claim, ClaimOutcome, CounterStore, IdStore
from otpserver.stores.counters import Counter, Decision
from tests.conftest import TEST_STORE_TIMEOUT_SECONDS as TIMEOUT
from tests.support.redis_server import BACKENDS, emptied_database

NOW = 1_800_000_000_000
MINUTE = 60_000
PAIRINGS = ["memory", *BACKENDS, "redis-apart"]
"""Memory; IDs and counters together on every Redis deployment; and apart, in two
databases of one Redis."""

Stores = tuple[IdStore, CounterStore]


def counter(key: bytes = b"t:f", limit: int = 2, cost: int = 1) -> Counter:
    return Counter("test", key, limit, MINUTE, 0, cost)


def spend_first(
    spend: bytes | None,
    file: bytes | None,
    *counters: Counter,
    resets: tuple[bytes, ...] = (),
    file_when_refused: bool = False,
) -> Claim:
    return Claim(
        order="spend_first",
        spend=spend,
        file=file,
        ttl_seconds=60,
        counters=counters,
        resets=resets,
        file_when_refused=file_when_refused,
    )


def charge_first(spend: bytes | None, file: bytes | None, *counters: Counter) -> Claim:
    return Claim(order="charge_first", spend=spend, file=file, ttl_seconds=60, counters=counters)


@pytest.fixture(params=PAIRINGS)
async def stores(request: pytest.FixtureRequest) -> AsyncIterator[Stores]:
    """An ID store and a counter store, paired as a deployment may pair them."""
    if request.param == "memory":
        yield MemoryIdStore(clock=lambda: NOW / 1000), MemoryCounterStore()
        return
    apart = request.param == "redis-apart"
    url: str = request.getfixturevalue("redis_deployments").url("redis" if apart else request.param)
    ids = RedisIdStore(redis_client(url, TIMEOUT), TIMEOUT)
    counters_url = emptied_database(url) if apart else url
    counters = RedisCounterStore(redis_client(counters_url, TIMEOUT), TIMEOUT)
    yield ids, counters
    await ids.aclose()
    await counters.aclose()


async def claim(stores: Stores, step: Claim, now_ms: int = NOW) -> ClaimOutcome:
    ids, counters = stores
    return await ids.claim(step, counters, now_ms)


async def test_a_won_claim_rotates_and_charges(stores: Stores) -> None:
    """The old ID is spent, the new one filed, and the counters charged as `hit` would."""
    ids, counters = stores
    assert await ids.add(b"o" * 16, 60)
    outcome = await claim(stores, spend_first(b"o" * 16, b"n" * 16, counter()))
    assert outcome == ClaimOutcome(True, Decision(True))
    assert not await ids.consume(b"o" * 16)
    assert await ids.consume(b"n" * 16)
    assert (await counters.hit([counter()], NOW)).allowed
    assert await counters.hit([counter()], NOW) == Decision(False, MINUTE, (0,))


async def test_a_lost_claim_charges_nothing_and_files_nothing(stores: Stores) -> None:
    """An unknown (replayed) ID is not claimed; no counter moved and the new ID was not filed."""
    ids, counters = stores
    outcome = await claim(stores, spend_first(b"x" * 16, b"n" * 16, counter(limit=1)))
    assert not outcome.claimed
    assert not await ids.consume(b"n" * 16)
    assert (await counters.hit([counter(limit=1)], NOW)).allowed


async def test_a_refused_charge_still_rotates(stores: Stores) -> None:
    """Claimed but over a limit: the refusal comes back, and only the new ID is live."""
    ids, counters = stores
    await counters.hit([counter(limit=1)], NOW)
    assert await ids.add(b"o" * 16, 60)
    outcome = await claim(stores, spend_first(b"o" * 16, b"n" * 16, counter(limit=1)), NOW + 5)
    assert outcome == ClaimOutcome(True, Decision(False, MINUTE - 5, (0,)))
    assert not await ids.consume(b"o" * 16)
    assert await ids.consume(b"n" * 16)


async def test_parallel_claims_of_one_id_charge_once(stores: Stores) -> None:
    """Of 30 concurrent claims of one ID, one wins and only its charge counts."""
    ids, counters = stores
    assert await ids.add(b"o" * 16, 60)
    results = await asyncio.gather(
        *(
            claim(stores, spend_first(b"o" * 16, bytes([i]) * 16, counter(limit=2)))
            for i in range(30)
        )
    )
    assert sum(r.claimed for r in results) == 1
    assert (await counters.hit([counter(limit=2)], NOW)).allowed
    assert not (await counters.hit([counter(limit=2)], NOW)).allowed


async def test_an_allowed_claim_resets_and_a_refused_one_does_not(stores: Stores) -> None:
    """A correct code's step clears the failure count it names, only when it is allowed."""
    ids, counters = stores
    failures = counter(b"t:failures", limit=3)
    await counters.hit([failures], NOW)
    await counters.hit([failures], NOW)
    assert await ids.add(b"a" * 16, 60)
    check = counter(b"t:check", limit=1, cost=0)
    await counters.hit([counter(b"t:check", limit=1)], NOW)
    refused = await claim(stores, spend_first(b"a" * 16, b"b" * 16, check, resets=(b"t:failures",)))
    assert refused.claimed
    assert refused.decision is not None
    assert not refused.decision.allowed
    assert (await counters.hit([failures], NOW)).allowed  # the third failure still counts
    assert not (await counters.hit([failures], NOW)).allowed
    open_check = counter(b"t:open", limit=1, cost=0)
    allowed = await claim(
        stores, spend_first(b"b" * 16, b"c" * 16, open_check, resets=(b"t:failures",))
    )
    assert allowed == ClaimOutcome(True, Decision(True))
    assert (await counters.hit([failures], NOW)).allowed  # counting starts over


async def test_correct_codes_racing_wrong_ones_keep_exactly_once_and_the_lockout(
    stores: Stores,
) -> None:
    """Ten copies of one cookie carrying the right code race thirty cookies of the same
    credential guessed wrong, as the claim seam sees them: every request spends its own
    cookie's ID; a guess charges the failure count, a right code is refused while the
    credential is locked and otherwise clears the count. Whatever the order: one copy of
    the right cookie spends it, every guess spends its own, the count never passes the
    limit, and a right code that got through wiped at most the limit minus one failures
    (those before it); when none got through, exactly the limit of guesses counted."""
    ids, counters = stores
    limit = 5
    failures = counter(b"t:race-failures", limit=limit)
    locked = counter(b"t:race-failures", limit=limit, cost=0)
    right_id = b"r" * 16
    assert await ids.add(right_id, 60)
    wrong_ids = [bytes([i]) * 16 for i in range(30)]
    for spent in wrong_ids:
        assert await ids.add(spent, 60)
    rights = [
        spend_first(right_id, bytes([100 + i]) * 16, locked, resets=(b"t:race-failures",))
        for i in range(10)
    ]
    wrongs = [
        spend_first(spent, bytes([200 - i]) * 16, failures) for i, spent in enumerate(wrong_ids)
    ]
    # Half the guesses are sent first, so even a store that runs them in order meets a
    # right code at a locked credential.
    steps = [*wrongs[:15], *rights, *wrongs[15:]]
    outcomes = await asyncio.gather(*(claim(stores, step) for step in steps))
    right_outcomes, wrong_outcomes = outcomes[15:25], outcomes[:15] + outcomes[25:]
    assert sum(o.claimed for o in right_outcomes) == 1
    assert all(o.claimed for o in wrong_outcomes)
    approved = [o for o in right_outcomes if o.claimed and o.decision and o.decision.allowed]
    charged = sum(bool(o.decision and o.decision.allowed) for o in wrong_outcomes)
    left = 0
    while (await counters.hit([counter(b"t:race-failures", limit=limit)], NOW)).allowed:
        left += 1
    counted = limit - left
    assert counted <= limit
    if approved:
        assert charged - counted <= limit - 1
    else:
        assert charged == counted == limit


async def test_a_spend_without_a_successor_only_consumes(stores: Stores) -> None:
    """A claim with nothing to file spends the old ID and files nothing."""
    ids, _ = stores
    assert await ids.add(b"o" * 16, 60)
    assert (await claim(stores, spend_first(b"o" * 16, None, counter()))).claimed
    assert not await ids.consume(b"o" * 16)
    assert not (await claim(stores, spend_first(b"o" * 16, None, counter()))).claimed


async def test_a_successor_for_a_hand_back_only_is_filed_only_when_refused(
    stores: Stores,
) -> None:
    """`file_when_refused`: an allowed step spends and charges but leaves no successor
    behind (a correct code that ends the flow); a refused one files it, for the state handed
    back under it; a lost spend files and charges nothing."""
    ids, counters = stores
    assert await ids.add(b"o" * 16, 60)
    allowed = await claim(
        stores, spend_first(b"o" * 16, b"n" * 16, counter(limit=2), file_when_refused=True)
    )
    assert allowed == ClaimOutcome(True, Decision(True))
    assert not await ids.consume(b"o" * 16)
    assert not await ids.consume(b"n" * 16)

    assert await ids.add(b"p" * 16, 60)
    refused = await claim(
        stores, spend_first(b"p" * 16, b"q" * 16, counter(limit=1), file_when_refused=True)
    )
    assert refused == ClaimOutcome(True, Decision(False, MINUTE, (0,)))
    assert not await ids.consume(b"p" * 16)
    assert await ids.consume(b"q" * 16)

    lost = await claim(
        stores, spend_first(b"x" * 16, b"y" * 16, counter(b"t:g", 1), file_when_refused=True)
    )
    assert not lost.claimed
    assert not await ids.consume(b"y" * 16)
    assert (await counters.hit([counter(b"t:g", 1)], NOW)).allowed


async def test_a_charge_first_files_when_allowed_whatever_it_asks(stores: Stores) -> None:
    """`file_when_refused` is for spend-first steps: a charge-first one files its ID only
    when allowed, as always, and nothing when refused."""
    ids, _ = stores
    step = Claim(
        order="charge_first",
        spend=None,
        file=b"n" * 16,
        ttl_seconds=60,
        counters=(counter(limit=1),),
        file_when_refused=True,
    )
    assert await claim(stores, step) == ClaimOutcome(True, Decision(True))
    assert await ids.consume(b"n" * 16)
    refused = await claim(stores, step)
    assert not refused.claimed
    assert not await ids.consume(b"n" * 16)


async def test_a_charge_first_files_the_new_id_only_when_allowed(stores: Stores) -> None:
    """Allowed: the ID is added (or rotated); refused: nothing moves, the old ID stays live."""
    ids, _ = stores
    first = await claim(stores, charge_first(None, b"a" * 16, counter(limit=2)))
    assert first == ClaimOutcome(True, Decision(True))
    second = await claim(stores, charge_first(b"a" * 16, b"b" * 16, counter(limit=2)))
    assert second == ClaimOutcome(True, Decision(True))
    assert not await ids.consume(b"a" * 16)
    refused = await claim(stores, charge_first(b"b" * 16, b"c" * 16, counter(limit=2)))
    assert refused == ClaimOutcome(False, Decision(False, MINUTE, (0,)))
    assert not await ids.consume(b"c" * 16)
    assert await ids.consume(b"b" * 16)


async def test_a_charge_first_keeps_its_charge_when_the_rotation_loses(stores: Stores) -> None:
    """A replayed cookie's ID cannot be rotated: not filed, but the charge stands (as in order)."""
    ids, counters = stores
    lost = await claim(stores, charge_first(b"x" * 16, b"n" * 16, counter(limit=1)))
    assert lost == ClaimOutcome(False, Decision(True))
    assert not await ids.consume(b"n" * 16)
    assert not (await counters.hit([counter(limit=1)], NOW)).allowed


def scripts_run(url: str) -> int:
    """How many scripts clients have sent the server so far (EVAL and EVALSHA): every
    claim step is a script, so two steps of a claim would count two."""
    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
        return sum(
            int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval")
        )
    finally:
        client.close()


@pytest.mark.parametrize(("counters_db", "scripts"), [("0", 1), ("1", 2)])
async def test_a_claim_on_one_redis_is_one_round_trip(
    redis_url: str, counters_db: str, scripts: int
) -> None:
    """IDs and counters in the same Redis: the whole claim is one script; counters kept
    elsewhere take the steps one call each (here: the rotation, then the charge)."""
    ids = RedisIdStore(redis_client(redis_url, TIMEOUT), TIMEOUT)
    counters = RedisCounterStore(
        redis_client(redis_url.rpartition("/")[0] + "/" + counters_db, TIMEOUT), TIMEOUT
    )
    try:
        assert await ids.add(b"o" * 16, 60)
        step = spend_first(b"o" * 16, b"n" * 16, counter(), counter(b"t:g"))
        await ids.claim(step, counters, NOW)  # loads the script: EVALSHA, then EVAL
        assert await ids.add(b"p" * 16, 60)
        before = scripts_run(redis_url)
        step = spend_first(b"p" * 16, b"q" * 16, counter(), counter(b"t:g"))
        assert (await ids.claim(step, counters, NOW)).claimed
        assert scripts_run(redis_url) - before == scripts
    finally:
        await ids.aclose()
        await counters.aclose()
