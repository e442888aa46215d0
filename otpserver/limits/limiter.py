"""The abuse limits of every step: one store step per decision, refusals as errors.

`otpserver.limits` says which counters a request touches; this binds those rules to the
counter store, the client address and the key that hashes every counter key. A refusal is
always the same `RATE:LIMITED` with `Retry-After`, whichever limit said no, so a client
learns when to come back and nothing about which rule or whose activity refused it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from starlette.types import Scope

from otpserver.errors import (
    CredentialInvalid,
    InvalidCookie,
    OtpError,
    RateLimited,
    StoreUnavailable,
)
from otpserver.limits import rules
from otpserver.limits.clientaddr import client_address, limit_bucket
from otpserver.limits.refusals import RefusalMemo
from otpserver.limits.rules import LimitPolicy
from otpserver.observability import outcomes
from otpserver.otp.credentials import Credential
from otpserver.settings.proxies import TrustedProxies
from otpserver.stores.base import (
    Claim,
    ClaimOutcome,
    CounterStore,
    Gate,
    IdStore,
    raise_if_gate_refused,
    take_gate,
)
from otpserver.stores.counters import Counter, Decision, retry_after_seconds

log = logging.getLogger("otpserver.limits.limiter")

CounterPlan = Callable[[LimitPolicy, bytes, Credential, str], tuple[Counter, ...]]
Action = Literal["send", "switch", "guess", "correct"]

PLANS: dict[Action, CounterPlan] = {
    "send": rules.send_counters,
    "switch": rules.switch_counters,
    "guess": rules.verify_counters,
    "correct": rules.correct_code_counters,
}
"""What each action charges: a code sent (create, resend), a pending credential made
current again, a wrong code compared, a correct code compared."""

DESTINATION_REFUSED = "Codes cannot be sent to phone numbers in this country or number range."

_CANONICAL_IPV4 = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
)
"""Dotted quads exactly as `str(IPv4Address)` writes them (no leading zeros), which is how
servers report socket peers."""


@dataclass(frozen=True, slots=True)
class Limiter:
    """Charges the limits of every step that sends or checks a code, or refuses it.

    Every charge goes through the ID store's one seam, `IdStore.claim`, together with the
    single-use ID change it belongs to: one round trip on Redis, whatever the step.
    """

    policy: LimitPolicy
    counters: CounterStore
    secret: bytes
    proxies: TrustedProxies
    refused: RefusalMemo = field(default_factory=RefusalMemo)
    """Addresses over their request allowance, answered without validation or a store call."""

    def check_destination(self, credential: Credential) -> None:
        """Refuse a phone number the SMS allow- or deny-list excludes (a 400, not a 429)."""
        if not rules.destination_allowed(credential, self.policy):
            # The default schema names its fields after the channels (`phone`).
            raise CredentialInvalid(DESTINATION_REFUSED, extra={"fields": [credential.channel]})

    def plan(self, action: Action, credential: Credential, address: str) -> tuple[Counter, ...]:
        """The counters `action` charges for `credential` from the limit bucket `address`."""
        return PLANS[action](self.policy, self.secret, credential, address)

    async def charge(
        self, action: Action, *, credential: Credential, address: str, now: int
    ) -> None:
        """Charge `action` alone, with no ID change (raises `RATE:LIMITED` when refused)."""
        counters = self.plan(action, credential, address)
        decision = await self.counters.hit(counters, now * 1000)
        if not decision.allowed:
            raise self._refusal(action, counters, decision)

    async def charge_then_file(
        self,
        ids: IdStore,
        action: Action,
        *,
        spend: bytes | None,
        file: bytes,
        ttl_seconds: float,
        credential: Credential,
        address: str,
        now: int,
        gate: Gate | None = None,
    ) -> bool:
        """Charge first, then file `file` (spending `spend` first when given).

        A refusal raises `RATE:LIMITED` before any ID changes, so it costs the client
        nothing. False when the spend lost (a replayed or superseded carrier) or the ID
        could not be filed; the charge stands either way. `gate`, unless already taken, is
        charged before everything else in the same step (`Claim.gate`); its refusal is
        raised as the gate's own error and changes nothing.
        """
        counters = self.plan(action, credential, address)
        outcome = await self._charge_first(ids, counters, spend, file, ttl_seconds, gate, now)
        decision = outcome.decision
        if decision is not None and not decision.allowed:
            raise self._refusal(action, counters, decision)
        return outcome.claimed

    async def _charge_first(
        self,
        ids: IdStore,
        counters: tuple[Counter, ...],
        spend: bytes | None,
        file: bytes | None,
        ttl_seconds: float,
        gate: Gate | None,
        now: int,
    ) -> ClaimOutcome:
        """One charge-first claim, the gate's refusal raised as its own error."""
        outcome = await ids.claim(
            Claim(
                order="charge_first",
                spend=spend,
                file=file,
                ttl_seconds=ttl_seconds,
                counters=counters,
                gate=take_gate(gate),
            ),
            self.counters,
            now * 1000,
        )
        raise_if_gate_refused(gate, outcome.gate)
        return outcome

    async def spend_then_charge(
        self,
        ids: IdStore,
        action: Action,
        *,
        spend: bytes,
        file: bytes,
        ttl_seconds: float,
        credential: Credential,
        address: str,
        now: int,
        gate: Gate | None = None,
        file_when_refused: bool = False,
    ) -> OtpError | None:
        """Spend a carrier's ID (filing `file` in its place) first, then charge `action`.

        Raises `InvalidCookie` when the spend is lost (a replayed or superseded carrier),
        and nothing is charged. Once spent, returns the refusal (`RATE:LIMITED`, or
        `STORE:UNAVAILABLE` when the charge alone failed) instead of raising it, because the
        caller must hand the state back under `file`; None when the step may go ahead. A
        correct code's step also clears its credential's consecutive failures. `gate`,
        unless already taken, is charged before the spend in the same step; its refusal is
        raised (nothing was spent, so there is nothing to hand back). With
        `file_when_refused`, `file` is filed only when the state is handed back under it
        (`Claim.file_when_refused`).
        """
        counters = self.plan(action, credential, address)
        # The failure counts the plan already keyed (`rules.failure_keys`): one HMAC less.
        resets = (
            tuple(c.key for c in counters if c.kind in rules.FAILURE_KINDS)
            if action == "correct"
            else ()
        )
        outcome = await ids.claim(
            Claim(
                order="spend_first",
                spend=spend,
                file=file,
                ttl_seconds=ttl_seconds,
                counters=counters,
                resets=resets,
                gate=take_gate(gate),
                file_when_refused=file_when_refused,
            ),
            self.counters,
            now * 1000,
        )
        raise_if_gate_refused(gate, outcome.gate)
        if not outcome.claimed:
            raise InvalidCookie()
        if outcome.decision is None:
            return StoreUnavailable()
        if outcome.decision.allowed:
            return None
        return self._refusal(action, counters, outcome.decision)

    def check_refused(self, address: str, now: int) -> None:
        """Raise `RATE:LIMITED` at once for an address an earlier refused request left over
        its allowance (see `otpserver.limits.refusals`): no validation, no store call."""
        wait_ms = self.refused.wait_ms(address, now * 1000)
        if wait_ms:
            raise self._refusal("create", (), Decision(False, wait_ms))

    async def charge_refused(
        self, ids: IdStore, address: str, now: int, gate: Gate | None = None
    ) -> None:
        """Charge a create refused as invalid against its address and networks; raise
        `RATE:LIMITED` (and remember the address) once they are over their allowance.

        A claim that spends and files nothing: `gate`, unless already taken, is charged
        first in the same step, so a refused body costs one round trip like any request.
        """
        counters = rules.refused_counters(self.policy, self.secret, address)
        outcome = await self._charge_first(ids, counters, None, None, 0, gate, now)
        decision = outcome.decision
        if decision is not None and not decision.allowed:
            self.refused.remember(address, now * 1000 + decision.retry_after_ms)
            raise self._refusal("create", counters, decision)

    async def forget_failures(self, credential: Credential) -> None:
        """Clear both consecutive-failure counts of `credential` (the lockout's and the long
        cap's), as a correct code does: how the host unlocks a credential it has checked by
        other means (`python -m otpserver.limits.unlock`)."""
        await self.counters.reset(rules.failure_keys(self.secret, credential))

    @staticmethod
    def _refusal(action: str, counters: Sequence[Counter], decision: Decision) -> RateLimited:
        kinds = tuple(counters[i].kind for i in decision.refused)
        log.info("rate limited: %s refused by %s", action, ",".join(kinds))
        outcomes.rate_limited(action, list(kinds))
        retry_after = retry_after_seconds(decision)
        return RateLimited(
            extra={"retryAfter": retry_after},
            headers={"Retry-After": str(retry_after), "RateLimit": f'"otp";r=0;t={retry_after}'},
            refused_by=kinds,
        )

    def address_bucket(self, scope: Scope) -> str:
        """The per-address bucket of this request (trusted-proxy rules applied)."""
        client = scope.get("client")
        peer = str(client[0]) if client else None
        if (
            peer is not None
            and not self.proxies.networks
            and not self.proxies.unix_socket
            and _CANONICAL_IPV4.fullmatch(peer)
        ):
            # Without trusted proxies the bucket is the peer's own address, and a canonical
            # dotted quad is already what parsing and printing it would give.
            return peer
        return limit_bucket(client_address(peer, scope.get("headers", ()), self.proxies))
