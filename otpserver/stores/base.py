"""The store roles the core relies on: single-use IDs, wrapped keys, limit counters and
markers, and the one steps that change an ID or a marker and charge the limits together
(`Claim`, `MarkerClaim`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

from otpserver.errors import StoreUnavailable
from otpserver.stores.counters import ALLOWED, Counter, Decision

log = logging.getLogger("otpserver.stores")


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    """One atomic store step: spend a single-use ID, file its successor, charge the limits.

    `order` says which comes first, and so what a loss or a refusal costs:

    - `"charge_first"` (a create): the counters are checked and charged; only if every one
      had room is `spend` consumed and `file` filed. A refusal changes no ID.
    - `"spend_first"` (a resend or a verification): `spend` is consumed first, and only the
      one caller that consumed it goes on to file `file` and charge the counters. A lost
      spend charges nothing; a refused charge still leaves `file` filed, so the caller can
      hand the unchanged state back under it.

    `spend` None means there is nothing to spend (a first create), `file` None nothing to
    file. `resets` are counter keys cleared once the step is allowed (a correct code clears
    its credential's consecutive failures). Keyword-only, so two IDs (both bytes) can never
    be passed in each other's place.

    `file_when_refused` files `file` only when the caller will hand the state back under
    it: when the charge refuses, or cannot be made. A correct code that leaves nothing
    pending needs no successor once it is allowed, and an ID filed anyway would sit in the
    store, dead, for the rest of its lifetime. Spend-first only: a charge-first step files
    only when allowed, whatever this says.

    `gate`, whatever the order, is charged before anything else (the calling API key's
    allowance, `Gate`): a refusal changes nothing at all and is reported as
    `ClaimOutcome.gate`; once it has room it stays charged, whatever the rest decides.
    """

    order: Literal["charge_first", "spend_first"]
    spend: bytes | None
    file: bytes | None
    ttl_seconds: float
    counters: tuple[Counter, ...]
    resets: tuple[bytes, ...] = ()
    gate: Counter | None = None
    file_when_refused: bool = False


class ClaimOutcome(NamedTuple):
    """What a `Claim` did: whether its IDs changed, and what the charge decided.

    `decision` is None only when the IDs changed but the charge after them could not be
    made (the store failed in between): the caller treats it as a store outage, with the
    state handed back under the new ID. A refused `gate` is the claim's whole answer: the
    step stopped before anything else, so `claimed` is False and `decision` means nothing.
    """

    claimed: bool
    decision: Decision | None
    gate: Decision = ALLOWED


SPEND_LOST = ClaimOutcome(claimed=False, decision=ALLOWED)
"""A spend-first claim whose ID another caller (or nobody: a replay) had already spent."""


def gate_refused(decision: Decision) -> ClaimOutcome:
    """A claim stopped by its gate: nothing spent, filed or charged."""
    return ClaimOutcome(claimed=False, decision=ALLOWED, gate=decision)


class Gate:
    """A request's allowance that one store step charges first, or, if the request never
    reaches such a step, a charge of its own: either way exactly once.

    `take` hands the counter out the first time only, so whichever comes first, the step or
    the fallback charge, is the one charge; every later `take` gets None. `refusal` turns a
    refused charge into the error the request answers with (429 with `Retry-After`).
    """

    __slots__ = ("_counter", "_refusal")

    def __init__(self, counter: Counter, refusal: Callable[[Decision], Exception]) -> None:
        self._counter: Counter | None = counter
        self._refusal = refusal

    @property
    def taken(self) -> bool:
        """Whether the counter was handed out (to a step, or to the fallback charge)."""
        return self._counter is None

    def take(self) -> Counter | None:
        """The counter to charge, the first time only."""
        counter, self._counter = self._counter, None
        return counter

    def refusal(self, decision: Decision) -> Exception:
        """The error for a refused charge of this gate."""
        return self._refusal(decision)


def take_gate(gate: Gate | None) -> Counter | None:
    """`gate`'s counter for the step about to run, if no step or charge has taken it."""
    return None if gate is None else gate.take()


def raise_if_gate_refused(gate: Gate | None, decision: Decision) -> None:
    """Raise the gate's refusal when the step reports its gate refused."""
    if not decision.allowed:
        if gate is None:
            raise RuntimeError("a step refused by a gate it was never given")
        raise gate.refusal(decision)


class IdStore(Protocol):
    """Single-use token-list IDs with a time to live.

    Every method is atomic with respect to concurrent callers and raises
    `otpserver.errors.StoreUnavailable` when the backend cannot be reached.
    """

    async def add(self, list_id: bytes, ttl_seconds: float) -> bool:
        """Record `list_id` as live for `ttl_seconds`; False if it was already live."""
        ...

    async def consume(self, list_id: bytes) -> bool:
        """Remove `list_id`; True for exactly one caller while it was live."""
        ...

    async def rotate(self, old_id: bytes, new_id: bytes, ttl_seconds: float) -> bool:
        """Consume `old_id` and, only if that succeeded, add `new_id`, in one atomic step."""
        ...

    async def claim(self, claim: Claim, counters: CounterStore, now_ms: int) -> ClaimOutcome:
        """Run `claim` against these IDs and `counters`, as its docstring orders.

        A store that cannot do both in one atomic step returns `claim_in_steps(self,
        counters, claim, now_ms)`: the order alone keeps every guarantee the core relies
        on. One that keeps counters beside its IDs may do it in one round trip.
        """
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class KeyStore(Protocol):
    """Wrapped key-encryption keys by numeric id; the store never sees a plaintext key."""

    async def get_or_create(self, key_id: int, candidate: bytes, ttl_seconds: float) -> bytes:
        """Store `candidate` under `key_id` unless a value exists; return the stored value.

        Atomic: instances racing on an empty store all get the same winner back.
        """
        ...

    async def get(self, key_id: int) -> bytes | None:
        """The wrapped key stored under `key_id`, or None once removed or expired."""
        ...

    async def delete(self, key_id: int) -> None:
        """Remove a key, e.g. to revoke every cookie it protects."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class CounterStore(Protocol):
    """Abuse-limit counters with fixed windows, checked and charged all or nothing.

    `hit` is one atomic step, also across processes sharing the backend: with concurrent
    callers, no counter ever goes past its limit. Keys expire by themselves once their
    window ends. Every method raises `otpserver.errors.StoreUnavailable` when the backend
    cannot answer, so the server fails closed with 503.
    """

    async def hit(self, counters: Sequence[Counter], now_ms: int) -> Decision:
        """Charge every counter if each has room (`otpserver.limits.decide`), else none."""
        ...

    async def reset(self, keys: Sequence[bytes]) -> None:
        """Forget the counts under `keys` (a correct code clears its credential's failures)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


async def claim_in_steps(
    ids: IdStore, counters: CounterStore, claim: Claim, now_ms: int
) -> ClaimOutcome:
    """`IdStore.claim` as a few calls in the claim's order, for stores that keep IDs and
    counters apart. The spend is still atomic (one `rotate`/`consume`), so exactly one
    concurrent caller wins it; only the charge happens in a call of its own."""
    if claim.gate is not None:
        # Alone and first: a refused key must not spend an ID or charge any other limit.
        gated = await counters.hit([claim.gate], now_ms)
        if not gated.allowed:
            return gate_refused(gated)
    if claim.order == "charge_first":
        decision = await counters.hit(claim.counters, now_ms)
        if not decision.allowed:
            return ClaimOutcome(claimed=False, decision=decision)
        claimed = await _change_ids(ids, claim)
        if claimed:
            await _reset(counters, claim.resets)
        return ClaimOutcome(claimed=claimed, decision=decision)
    if claim.file_when_refused:
        # Spend only; the successor is filed once the charge has refused (below).
        if claim.spend is not None and not await ids.consume(claim.spend):
            return SPEND_LOST
    elif not await _change_ids(ids, claim):
        return SPEND_LOST
    try:
        decision = await counters.hit(claim.counters, now_ms)
    except StoreUnavailable:
        await _file_for_hand_back(ids, claim)
        return ClaimOutcome(claimed=True, decision=None)
    if decision.allowed:
        await _reset(counters, claim.resets)
    else:
        await _file_for_hand_back(ids, claim)
    return ClaimOutcome(claimed=True, decision=decision)


async def _file_for_hand_back(ids: IdStore, claim: Claim) -> None:
    """File a `file_when_refused` claim's ID, now that the state is handed back under it."""
    if not claim.file_when_refused or claim.file is None:
        return
    try:
        await ids.add(claim.file, claim.ttl_seconds)
    except StoreUnavailable:
        # The refusal still stands and is answered; only the handed-back state is lost,
        # as any state is in an outage: the next request starts afresh.
        log.warning("could not file the handed-back state's ID after a refused step")


async def _change_ids(ids: IdStore, claim: Claim) -> bool:
    if claim.spend is not None and claim.file is not None:
        return await ids.rotate(claim.spend, claim.file, claim.ttl_seconds)
    if claim.spend is not None:
        return await ids.consume(claim.spend)
    if claim.file is not None:
        return await ids.add(claim.file, claim.ttl_seconds)
    return True


async def _reset(counters: CounterStore, keys: tuple[bytes, ...]) -> None:
    if not keys:
        return
    try:
        await counters.reset(keys)
    except StoreUnavailable:
        # The step it follows has succeeded (a correct code is spent); failing now would
        # punish the user for an outage. A count left behind can only make the lockout
        # stricter, never looser.
        log.warning("could not reset limit counters after an allowed step")


class MarkerStore(Protocol):
    """Short-lived markers under HMAC-derived names: replay guards, spent codes, revocations.

    Markers are how the server remembers without keeping per-user rows: each is a small
    value under a name the caller derives with a keyed hash, and each expires by itself.
    Every method is one atomic step, also across processes sharing the backend, and raises
    `otpserver.errors.StoreUnavailable` when the backend cannot answer (fail closed).
    """

    async def put_if_absent(self, key: bytes, value: bytes, ttl_seconds: float) -> bool:
        """Store `value` under `key` unless a live marker is there; True for exactly one caller."""
        ...

    async def get(self, key: bytes) -> bytes | None:
        """The live marker under `key`, or None."""
        ...

    async def advance(self, key: bytes, value: int, ttl_seconds: float) -> bool:
        """Store the integer `value` only if it is greater than the live integer under `key`
        (or nothing live is there), restarting the time to live; True when stored.

        Concurrent callers offering the same value: exactly one wins. A marker written by
        `put` with a value that is not an integer is never advanced.
        """
        ...

    async def put(self, key: bytes, value: bytes, ttl_seconds: float) -> None:
        """Store `value` under `key`, replacing whatever is there."""
        ...

    async def read(
        self,
        names: tuple[bytes, ...],
        gate: Counter | None,
        counters: CounterStore,
        now_ms: int,
    ) -> MarkerRead:
        """The live markers under `names`, in order (None where there is none), with `gate`
        (the calling API key's allowance, `Gate`) charged first in the same step: when it
        refuses, nothing is read and the read says so (`MarkerRead.gate`).

        A store that cannot charge and read in one step returns `read_markers_in_steps(self,
        counters, names, gate, now_ms)`: reading changes nothing, so only the round trips
        differ.
        """
        ...

    async def claim(self, claim: MarkerClaim, counters: CounterStore, now_ms: int) -> MarkerOutcome:
        """Run `claim` against these markers and `counters`, as its docstring orders.

        A store that cannot do it in one atomic step returns `claim_marker_in_steps(self,
        counters, claim, now_ms)`: the order alone keeps every guarantee the core relies
        on. One that keeps counters beside its markers may do it in one round trip.
        """
        ...

    async def delete(self, key: bytes) -> None:
        """Remove the marker under `key`, if any."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class MarkerAdvance(NamedTuple):
    """Take a marker by moving it forward (`MarkerStore.advance`): a TOTP step."""

    key: bytes
    value: int
    ttl_seconds: float


class MarkerPut(NamedTuple):
    """Take a marker by creating it (`MarkerStore.put_if_absent`): a spent backup code."""

    key: bytes
    value: bytes
    ttl_seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class MarkerClaim:
    """One atomic store step of a second-factor check whose code is already compared.

    In this order, each step only if the one before let it through:

    1. Refuse as superseded if a live marker named in `not_before` holds an instant (ms,
       decimal digits) later than `issued_at_ms`: a newer backup-code set exists. Nothing
       is charged or taken.
    2. Charge `failures` (`CounterStore.hit`); a refusal is the lockout, and takes nothing.
    3. Take `take`, the code's single-use marker; None when the code matched nothing, so
       the charge stands as a failure. A take that loses (a replayed step, a spent code,
       or a concurrent request that took it first) leaves the charge standing too.
    4. A taken marker clears `failures`: the right code resets its consecutive failures.

    Charging before taking is what makes the lockout hold when the steps run apart: a
    locked credential never reaches its marker, whatever the number of parallel requests.
    Run as one step, the charge a right code makes is cleared before anyone can see it.

    Before all of these, `gate` is charged (the calling API key's allowance, `Gate`): a
    refusal stops the step with nothing read, charged or taken (`MarkerOutcome.gate`).
    """

    take: MarkerAdvance | MarkerPut | None
    failures: tuple[Counter, ...]
    not_before: tuple[bytes, ...] = ()
    issued_at_ms: int = 0
    gate: Counter | None = None


class MarkerOutcome(NamedTuple):
    """What a `MarkerClaim` did: whether the marker was taken, and what the charge decided.

    `superseded` means the claim stopped at its first step: nothing was charged or taken
    but the gate. A refused `gate` means it stopped before that: nothing at all changed.
    """

    taken: bool
    decision: Decision
    superseded: bool = False
    gate: Decision = ALLOWED


SUPERSEDED = MarkerOutcome(taken=False, decision=ALLOWED, superseded=True)
"""A marker claim refused because a newer credential replaced the one it checked."""


def newer_than(stored: bytes | None, issued_at_ms: int) -> bool:
    """Whether a not-before marker's value is an instant later than `issued_at_ms`; a value
    that is not decimal digits (or no marker at all) supersedes nothing."""
    return stored is not None and stored.isdigit() and int(stored) > issued_at_ms


def marker_gate_refused(decision: Decision) -> MarkerOutcome:
    """A marker claim stopped by its gate: nothing read, taken or charged."""
    return MarkerOutcome(taken=False, decision=ALLOWED, gate=decision)


class MarkerRead(NamedTuple):
    """What `MarkerStore.read` found: each named marker's live value, in order; nothing when
    its gate refused, whose decision it then carries."""

    values: tuple[bytes | None, ...]
    gate: Decision = ALLOWED


async def read_markers_in_steps(
    markers: MarkerStore,
    counters: CounterStore,
    names: tuple[bytes, ...],
    gate: Counter | None,
    now_ms: int,
) -> MarkerRead:
    """`MarkerStore.read` as a few calls: the gate's charge, then one `get` a name."""
    if gate is not None:
        gated = await counters.hit([gate], now_ms)
        if not gated.allowed:
            return MarkerRead((), gated)
    return MarkerRead(tuple([await markers.get(name) for name in names]))


async def claim_marker_in_steps(
    markers: MarkerStore, counters: CounterStore, claim: MarkerClaim, now_ms: int
) -> MarkerOutcome:
    """`MarkerStore.claim` as a few calls in the claim's order, for stores that keep
    markers and counters apart. The charge comes before the take and the take is atomic
    (one `advance`/`put_if_absent`), so at most one concurrent caller takes the marker and
    none of them once the failures are at their limit."""
    if claim.gate is not None:
        gated = await counters.hit([claim.gate], now_ms)
        if not gated.allowed:
            return marker_gate_refused(gated)
    for key in claim.not_before:
        if newer_than(await markers.get(key), claim.issued_at_ms):
            return SUPERSEDED
    decision = await counters.hit(claim.failures, now_ms) if claim.failures else ALLOWED
    if not decision.allowed:
        return MarkerOutcome(taken=False, decision=decision)
    take = claim.take
    if isinstance(take, MarkerAdvance):
        taken = await markers.advance(take.key, take.value, take.ttl_seconds)
    elif isinstance(take, MarkerPut):
        taken = await markers.put_if_absent(take.key, take.value, take.ttl_seconds)
    else:
        taken = False
    if taken:
        await _reset(counters, tuple(counter.key for counter in claim.failures))
    return MarkerOutcome(taken=taken, decision=decision)
