"""The abuse limits at the HTTP edge: one counter-store call per decision, refusals as errors.

`otpserver.limits` says which counters a request touches; this binds those rules to the
counter store, the client address and the key that hashes every counter key. A refusal is
always the same `RATE:LIMITED` with `Retry-After`, whichever limit said no, so a client
learns when to come back and nothing about which rule or whose activity refused it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import Scope

from otpserver import limits
from otpserver.clientaddr import TrustedProxies, client_address, limit_bucket
from otpserver.errors import CredentialInvalid, RateLimited, StoreUnavailable
from otpserver.hooks import CounterStore, Credential
from otpserver.limits import Counter, LimitPolicy

log = logging.getLogger("otpserver.limiter")

CounterPlan = Callable[[LimitPolicy, bytes, Credential, str], tuple[Counter, ...]]

DESTINATION_REFUSED = "Codes cannot be sent to phone numbers in this country or number range."


@dataclass(frozen=True, slots=True)
class Limiter:
    """Charges the limits of create, resend and verify requests, or refuses them."""

    policy: LimitPolicy
    counters: CounterStore
    secret: bytes
    proxies: TrustedProxies

    def check_destination(self, credential: Credential) -> None:
        """Refuse a phone number the SMS allow- or deny-list excludes (a 400, not a 429)."""
        if not limits.destination_allowed(credential, self.policy):
            # The default schema names its fields after the channels (`phone`).
            raise CredentialInvalid(DESTINATION_REFUSED, extra={"fields": [credential.channel]})

    async def charge_send(self, scope: Scope, credential: Credential, now: int) -> None:
        """Before a code is made and sent: lockout, credential, address, channel, prefix."""
        await self._charge("send", limits.send_counters, scope, credential, now)

    async def charge_switch(self, scope: Scope, credential: Credential, now: int) -> None:
        """Before a pending credential is made current again (nothing is sent)."""
        await self._charge("switch", limits.switch_counters, scope, credential, now)

    async def charge_verify(self, scope: Scope, credential: Credential, now: int) -> None:
        """Before a code is compared: the lockout check and the failure, charged together."""
        await self._charge("verify", limits.verify_counters, scope, credential, now)

    async def forget_failures(self, credential: Credential) -> None:
        """After a correct code: the consecutive-failure count starts again from zero."""
        key = limits.lockout(self.policy, self.secret, credential, cost=0).key
        try:
            await self.counters.reset([key])
        except StoreUnavailable:
            # The code was right and is spent; failing now would punish the user for an
            # outage. A count left behind can only make the lockout stricter, never looser.
            log.warning("could not reset the failure count after a successful verification")

    async def _charge(
        self, action: str, plan: CounterPlan, scope: Scope, credential: Credential, now: int
    ) -> None:
        counters = plan(self.policy, self.secret, credential, self.address_bucket(scope))
        decision = await self.counters.hit(counters, now * 1000)
        if decision.allowed:
            return
        kinds = ",".join(counters[i].kind for i in decision.refused)
        log.info("rate limited: %s refused by %s", action, kinds)
        retry_after = limits.retry_after_seconds(decision)
        raise RateLimited(
            extra={"retryAfter": retry_after},
            headers={"Retry-After": str(retry_after), "RateLimit": f'"otp";r=0;t={retry_after}'},
        )

    def address_bucket(self, scope: Scope) -> str:
        """The per-address bucket of this request (trusted-proxy rules applied)."""
        client = scope.get("client")
        peer = str(client[0]) if client else None
        return limit_bucket(client_address(peer, scope.get("headers", ()), self.proxies))
