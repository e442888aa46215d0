"""Edit this file to change the abuse limits: how many codes, guesses and SMS anyone may get.

Contract
    `LIMITS` is an `otpserver.limits.LimitPolicy`; the environment may override single
    values (`OTP_LIMIT_*`, `OTP_SMS_*`, see `sample.env`), and the result is checked at
    start-up (`max_failures` at most 100, every window and allowance at least 1, a `"*"`
    entry in `channel_sends_per_hour`). `make_counter_store(settings)` returns the
    `CounterStore` (see `otpserver.hooks.CounterStore`) that keeps the counts: `hit` must
    check every counter of a request and charge all of them or none, atomically across every
    process that serves the same users; keys must expire by themselves.

What the core guarantees
    Counters are charged after the request is validated and before anything is sent or
    compared, so a refused request sends nothing and a refusal never costs a guess. Store
    keys are HMAC-SHA256 of the credential or client address under a key derived from
    `OTP_MASTER_KEY`: the store never holds either in clear. Every refusal is the same
    429 `RATE:LIMITED` with `Retry-After`, whichever limit said no; a phone number outside
    the SMS lists is a 400 `CREDENTIAL:INVALID` instead, because waiting will not help.

What to raise
    From a store: `otpserver.errors.StoreUnavailable` when the backend cannot answer; the
    server then answers 503 and sends nothing (it fails closed).

The limits and what each one stops
    * `max_failures` consecutive wrong codes lock a credential for `lockout_seconds`, across
      codes, browsers and clients; creating or resending never resets the count, a correct
      code does (NIST SP 800-63B rev 4). A count that has not locked by
      `failure_window_seconds` after its first wrong code is forgotten. Once locked, an
      attacker gets at most `max_failures` guesses per `lockout_seconds` per credential.
    * `credential_sends` per `credential_window_seconds` stops mailbox and phone bombing.
    * `address_requests` (create and resend) and `address_verifies` per
      `address_window_seconds` slow one client spraying many credentials. IPv6 clients are
      counted per /64. Behind a proxy, set `OTP_TRUSTED_PROXIES` or every user shares the
      proxy's allowance.
    * `channel_sends_per_hour` caps the bill if everything else fails: one budget per
      channel for all users together (`"*"` for channels not named).
    * For `sms_channel` only: `sms_allowlist`/`sms_denylist` (ISO region codes or E.164
      prefixes) and a breaker per number prefix (`prefix_digits`): `prefix_sends` SMS per
      `prefix_window_seconds` trip it for `prefix_breaker_seconds` (SMS pumping).

Trade-offs of the default
    Windows are fixed and start at a counter's first hit: exact and one small record per
    key, but a client can use a whole allowance at the end of a window and another at the
    start of the next (up to twice the limit in one window's length). Any per-credential
    limit can be spent by someone else: an attacker who knows an address can lock it or use
    its sends, at the cost of sending those codes to the real owner; lower `lockout_seconds`
    if that matters more to you than guessing speed. The SMS allow-list is empty, so every
    country can receive codes: list the countries you serve, e.g. `("GB", "IE")`.
"""

from __future__ import annotations

from otpserver.limits.rules import LimitPolicy
from otpserver.settings.environment import Settings
from otpserver.stores import MemoryCounterStore, RedisCounterStore, redis_client
from otpserver.stores.base import CounterStore

LIMITS = LimitPolicy(
    max_failures=10,
    failure_window_seconds=86400,
    lockout_seconds=900,
    credential_sends=5,
    credential_window_seconds=600,
    address_requests=30,
    address_verifies=60,
    address_window_seconds=600,
    channel_sends_per_hour={"email": 5000, "phone": 500, "*": 1000},
    sms_channel="phone",
    sms_allowlist=(),
    sms_denylist=(),
    prefix_digits=6,
    prefix_sends=20,
    prefix_window_seconds=3600,
    prefix_breaker_seconds=3600,
)


def make_counter_store(settings: Settings) -> CounterStore:
    """The counter store on the same backend as the IDs: memory://, or Redis (one script call
    per decision)."""
    if settings.uses_memory_store:
        return MemoryCounterStore(max_counters=settings.memory_max_counters)
    timeout = settings.store_timeout_seconds
    wait = settings.redis.wait_replicas
    return RedisCounterStore(redis_client(settings.store_url, timeout, wait_replicas=wait), timeout)
