"""The abuse limits at the HTTP edge: one counter-store call per decision, refusals as errors.

`otpserver.limits` says which counters a request touches; this binds those rules to the
counter store, the client address and the key that hashes every counter key. A refusal is
always the same `RATE:LIMITED` with `Retry-After`, whichever limit said no, so a client
learns when to come back and nothing about which rule or whose activity refused it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

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
from otpserver.limits.rules import LimitPolicy
from otpserver.observability import outcomes
from otpserver.otp.credentials import Credential
from otpserver.settings.proxies import TrustedProxies
from otpserver.stores.base import CounterStore, IdStore
from otpserver.stores.counters import Counter, Decision, retry_after_seconds

log = logging.getLogger("otpserver.limits.limiter")

CounterPlan = Callable[[LimitPolicy, bytes, Credential, str], tuple[Counter, ...]]
Action = Literal["send", "switch", "verify"]

PLANS: dict[Action, CounterPlan] = {
    "send": rules.send_counters,
    "switch": rules.switch_counters,
    "verify": rules.verify_counters,
}
"""What each action charges: a code sent (create, resend), a pending credential made
current again, a code compared."""

DESTINATION_REFUSED = "Codes cannot be sent to phone numbers in this country or number range."

_CANONICAL_IPV4 = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
)
"""Dotted quads exactly as `str(IPv4Address)` writes them (no leading zeros), which is how
servers report socket peers."""


@runtime_checkable
class ChargingIdStore(Protocol):
    """An ID store that can also charge limit counters kept in the same backend, in the same
    atomic step as a rotation (one round trip instead of two)."""

    def charges_with(self, counters: object) -> bool:
        """Whether `counters` keeps its counts where this store keeps its IDs."""
        ...

    async def rotate_and_hit(
        self,
        old_id: bytes,
        new_id: bytes,
        ttl_seconds: float,
        counters: Sequence[Counter],
        now_ms: int,
    ) -> Decision | None:
        """`IdStore.rotate`, then only if it succeeded `CounterStore.hit`, atomically; None
        when the rotation failed (and nothing was charged)."""
        ...

    async def hit_and_file(
        self,
        counters: Sequence[Counter],
        now_ms: int,
        old_id: bytes | None,
        new_id: bytes,
        ttl_seconds: float,
    ) -> tuple[Decision, bool]:
        """`CounterStore.hit`, then only if allowed `IdStore.rotate` (or `add` when `old_id`
        is None), atomically; the flag says whether `new_id` was filed."""
        ...


@dataclass(frozen=True, slots=True)
class Limiter:
    """Charges the limits of create, resend and verify requests, or refuses them."""

    policy: LimitPolicy
    counters: CounterStore
    secret: bytes
    proxies: TrustedProxies
    claims: ChargingIdStore | None = None
    """The ID store, when it keeps its IDs beside `counters`: a request then charges its
    limits and changes its cookie's ID in one atomic step (one round trip on Redis)."""

    def check_destination(self, credential: Credential) -> None:
        """Refuse a phone number the SMS allow- or deny-list excludes (a 400, not a 429)."""
        if not rules.destination_allowed(credential, self.policy):
            # The default schema names its fields after the channels (`phone`).
            raise CredentialInvalid(DESTINATION_REFUSED, extra={"fields": [credential.channel]})

    async def charge_send(self, scope: Scope, credential: Credential, now: int) -> None:
        """Before a code is made and sent: lockout, credential, address, channel, prefix."""
        await self._charge("send", rules.send_counters, scope, credential, now)

    async def charge_and_file(
        self,
        action: Action,
        ids: IdStore,
        old_id: bytes | None,
        new_id: bytes,
        ttl_seconds: float,
        scope: Scope,
        credential: Credential,
        now: int,
    ) -> bool:
        """Charge first, then file `new_id`: rotated from `old_id`, or added if that is None.

        A refusal raises `RATE:LIMITED` before any ID changes, so it costs the client
        nothing. False when the rotation lost (a replayed or superseded cookie) or the ID
        could not be added; the charge stands either way.
        """
        counters = PLANS[action](self.policy, self.secret, credential, self.address_bucket(scope))
        if self.claims is not None:
            decision, filed = await self.claims.hit_and_file(
                counters, now * 1000, old_id, new_id, ttl_seconds
            )
            if not decision.allowed:
                raise self._refusal(action, counters, decision)
            return filed
        decision = await self.counters.hit(counters, now * 1000)
        if not decision.allowed:
            raise self._refusal(action, counters, decision)
        if old_id is None:
            return await ids.add(new_id, ttl_seconds)
        return await ids.rotate(old_id, new_id, ttl_seconds)

    async def claim_and_charge(
        self,
        action: Action,
        ids: IdStore,
        old_id: bytes,
        new_id: bytes,
        ttl_seconds: float,
        scope: Scope,
        credential: Credential,
        now: int,
    ) -> OtpError | None:
        """Claim a cookie (rotate `old_id` to `new_id`) first, then charge `action`.

        Raises `InvalidCookie` when the claim is lost (a replayed or superseded cookie), and
        nothing is charged. Once claimed, returns the refusal (`RATE:LIMITED`, or
        `STORE:UNAVAILABLE` from the charge alone) instead of raising it, because the caller
        must hand the cookie back under `new_id`; None when the request may go ahead.
        """
        counters = PLANS[action](self.policy, self.secret, credential, self.address_bucket(scope))
        if self.claims is not None:
            decision = await self.claims.rotate_and_hit(
                old_id, new_id, ttl_seconds, counters, now * 1000
            )
            if decision is None:
                raise InvalidCookie()
        else:
            if not await ids.rotate(old_id, new_id, ttl_seconds):
                raise InvalidCookie()
            try:
                decision = await self.counters.hit(counters, now * 1000)
            except StoreUnavailable as error:
                return error
        return None if decision.allowed else self._refusal(action, counters, decision)

    async def forget_failures(self, credential: Credential) -> None:
        """After a correct code: the consecutive-failure count starts again from zero."""
        failures_key, _ = rules.credential_keys(self.secret, credential)
        try:
            await self.counters.reset([failures_key])
        except StoreUnavailable:
            # The code was right and is spent; failing now would punish the user for an
            # outage. A count left behind can only make the lockout stricter, never looser.
            log.warning("could not reset the failure count after a successful verification")

    async def _charge(
        self, action: str, plan: CounterPlan, scope: Scope, credential: Credential, now: int
    ) -> None:
        counters = plan(self.policy, self.secret, credential, self.address_bucket(scope))
        decision = await self.counters.hit(counters, now * 1000)
        if not decision.allowed:
            raise self._refusal(action, counters, decision)

    @staticmethod
    def _refusal(action: str, counters: Sequence[Counter], decision: Decision) -> RateLimited:
        kinds = ",".join(counters[i].kind for i in decision.refused)
        log.info("rate limited: %s refused by %s", action, kinds)
        outcomes.rate_limited(action, [counters[i].kind for i in decision.refused])
        retry_after = retry_after_seconds(decision)
        return RateLimited(
            extra={"retryAfter": retry_after},
            headers={"Retry-After": str(retry_after), "RateLimit": f'"otp";r=0;t={retry_after}'},
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
