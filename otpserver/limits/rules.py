"""Abuse limits as pure rules: which counters a request touches, and what charging them decides.

Nothing here does I/O or reads a clock: instants are whole milliseconds passed in as
`now_ms`. A request touches a few `Counter`s (per credential, per client address, per
channel, per phone prefix); a counter store checks them all and charges them all, or none,
in one atomic step, using `decide` and `charged` below (the Redis store mirrors them in Lua).

Windows are fixed and start at a counter's first hit, so they are exact and cost one small
record per key; the price is that a client can spend a whole allowance just before a
window ends and another just after, so up to twice the limit within one window's length.
A counter with `lock_ms` behaves as a breaker: the hit that reaches its limit restarts its
window with the lock's length, and nothing gets through until that ends.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import phonenumbers

from otpserver.crypto.mac import hmac_sha256
from otpserver.errors import ConfigError
from otpserver.otp.credentials import Credential
from otpserver.settings import defaults
from otpserver.settings.defaults import ANY_CHANNEL
from otpserver.settings.overrides import (
    LIMIT_BOUNDS,
    LIMIT_ENV_FIELDS,
    MAX_ALLOWANCE,
    LimitOverrides,
    is_destination_entry,
)
from otpserver.settings.overrides import (
    MAX_FAILURES_CEILING as MAX_FAILURES_CEILING,  # re-exported: the NIST ceiling
)
from otpserver.stores.counters import Counter

HOUR_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class LimitPolicy:
    """How much each credential, client address, channel and phone prefix may ask for.

    Counts are per window; windows are in seconds and start at a counter's first hit. A
    credential's wrong codes are counted from the first one for `failure_window_seconds`;
    the `max_failures`-th locks it for `lockout_seconds`, after which counting starts over.
    `sms_allowlist`/`sms_denylist` hold ISO 3166 region codes (`"GB"`) or E.164 prefixes
    (`"+4479"`) and apply to `sms_channel` only; the deny-list wins, and an empty
    allow-list allows every country.
    """

    max_failures: int = defaults.LIMIT_MAX_FAILURES
    failure_window_seconds: int = defaults.LIMIT_FAILURE_WINDOW_SECONDS
    lockout_seconds: int = defaults.LIMIT_LOCKOUT_SECONDS
    credential_sends: int = defaults.LIMIT_CREDENTIAL_SENDS
    credential_window_seconds: int = defaults.LIMIT_CREDENTIAL_WINDOW_SECONDS
    address_requests: int = defaults.LIMIT_ADDRESS_REQUESTS
    address_verifies: int = defaults.LIMIT_ADDRESS_VERIFIES
    address_window_seconds: int = defaults.LIMIT_ADDRESS_WINDOW_SECONDS
    channel_sends_per_hour: Mapping[str, int] = field(
        default_factory=lambda: defaults.LIMIT_CHANNEL_SENDS_PER_HOUR
    )
    sms_channel: str = defaults.SMS_CHANNEL
    sms_allowlist: tuple[str, ...] = defaults.SMS_ALLOWLIST
    sms_denylist: tuple[str, ...] = defaults.SMS_DENYLIST
    prefix_digits: int = defaults.SMS_PREFIX_DIGITS
    prefix_sends: int = defaults.SMS_PREFIX_SENDS
    prefix_window_seconds: int = defaults.SMS_PREFIX_WINDOW_SECONDS
    prefix_breaker_seconds: int = defaults.SMS_PREFIX_BREAKER_SECONDS

    def channel_budget(self, channel: str) -> int:
        """Sends per hour allowed on `channel` across all users."""
        budgets = self.channel_sends_per_hour
        return budgets.get(channel, budgets.get(ANY_CHANNEL, 0))

    def with_overrides(self, overrides: LimitOverrides) -> LimitPolicy:
        """A copy with what the environment set replaced, checked."""
        changes: dict[str, Any] = dict(overrides.numbers)
        if overrides.channel_sends_per_hour:
            changes["channel_sends_per_hour"] = MappingProxyType(
                {**self.channel_sends_per_hour, **overrides.channel_sends_per_hour}
            )
        if overrides.sms_allowlist is not None:
            changes["sms_allowlist"] = overrides.sms_allowlist
        if overrides.sms_denylist is not None:
            changes["sms_denylist"] = overrides.sms_denylist
        return dataclasses.replace(self, **changes).checked()

    def checked(self) -> LimitPolicy:
        """Return self, or raise one `ConfigError` naming every broken invariant."""
        problems = [
            f"{variable} must be between {low} and {high}"
            for variable, name in LIMIT_ENV_FIELDS.items()
            for low, high in [LIMIT_BOUNDS[name]]
            if not low <= getattr(self, name) <= high
        ]
        budgets = self.channel_sends_per_hour
        if ANY_CHANNEL not in budgets or not all(1 <= n <= MAX_ALLOWANCE for n in budgets.values()):
            problems.append(
                "OTP_LIMIT_CHANNEL_SENDS_PER_HOUR needs a '*' entry, and every budget "
                f"between 1 and {MAX_ALLOWANCE}"
            )
        for name, entries in (
            ("OTP_SMS_ALLOWLIST", self.sms_allowlist),
            ("OTP_SMS_DENYLIST", self.sms_denylist),
        ):
            if not all(is_destination_entry(e) for e in entries):
                problems.append(f"{name} entries must be region codes like GB or +prefixes")
        if problems:
            raise ConfigError(*problems)
        return self


# --- destinations (SMS pumping) ---------------------------------------------------------


def destination_allowed(credential: Credential, policy: LimitPolicy) -> bool:
    """Whether codes may go to this credential under the SMS allow- and deny-lists."""
    if credential.channel != policy.sms_channel or not (
        policy.sms_allowlist or policy.sms_denylist
    ):
        return True
    number = credential.address
    region = _region_of(number)

    def listed(entries: tuple[str, ...]) -> bool:
        return any(number.startswith(e) if e[0] == "+" else e == region for e in entries)

    if listed(policy.sms_denylist):
        return False
    return not policy.sms_allowlist or listed(policy.sms_allowlist)


def _region_of(number: str) -> str | None:
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(number, None))
    except phonenumbers.NumberParseException:
        return None


def phone_prefix(address: str, digits: int) -> str | None:
    """The first `digits` digits of an E.164 number (`+441632…` → `+441632`), if it is one."""
    if not address.startswith("+") or not address[1:].isdigit():
        return None
    return address[: digits + 1]


# --- counters ---------------------------------------------------------------------------


# --- what each request touches -----------------------------------------------------------


def counter_key(secret: bytes, kind: str, value: str) -> bytes:
    """`kind:` and 128 bits of HMAC-SHA256: stores and logs never see a credential or address."""
    digest = hmac_sha256(secret, f"{kind}\0{value}".encode())
    return f"{kind}:{digest[:16].hex()}".encode()


def credential_keys(secret: bytes, credential: Credential) -> tuple[bytes, bytes]:
    """A credential's failures (`f:`) and sends (`s:`) keys: the two halves of one
    HMAC-SHA256, as unrelated as two separate HMACs and half the work. The channel is part
    of the message, which keeps an email and a phone number of the same text apart."""
    digest = hmac_sha256(secret, f"c\0{credential.channel}\0{credential.address}".encode())
    return b"f:" + digest[:16].hex().encode(), b"s:" + digest[16:].hex().encode()


@functools.lru_cache(maxsize=64)
def channel_key(secret: bytes, channel: str) -> bytes:
    """The channel budget's key. Channels are the server's own few names, never client
    text, so remembering their keys is bounded."""
    return counter_key(secret, "g", channel)


def lockout(policy: LimitPolicy, secret: bytes, credential: Credential, cost: int) -> Counter:
    """Consecutive failed verifications of a credential, locking it at `max_failures`."""
    return _lockout(policy, credential_keys(secret, credential)[0], cost)


def _lockout(policy: LimitPolicy, key: bytes, cost: int) -> Counter:
    # Positional, here and below: a request builds several counters, and a NamedTuple
    # built from keywords costs twice as much. The field order is `Counter`'s.
    return Counter(
        "failures",
        key,
        policy.max_failures,
        policy.failure_window_seconds * 1000,
        policy.lockout_seconds * 1000,
        cost,
    )


def send_counters(
    policy: LimitPolicy, secret: bytes, credential: Credential, address: str
) -> tuple[Counter, ...]:
    """A create or resend that sends a code: refused while the credential is locked."""
    failures_key, sends_key = credential_keys(secret, credential)
    counters = [
        _lockout(policy, failures_key, cost=0),
        Counter(
            "credential-sends",
            sends_key,
            policy.credential_sends,
            policy.credential_window_seconds * 1000,
        ),
        _address_requests(policy, secret, address),
        Counter(
            "channel-budget",
            channel_key(secret, credential.channel),
            policy.channel_budget(credential.channel),
            HOUR_SECONDS * 1000,
        ),
    ]
    prefix = phone_prefix(credential.address, policy.prefix_digits)
    if credential.channel == policy.sms_channel and prefix is not None:
        counters.append(
            Counter(
                kind="prefix-breaker",
                key=counter_key(secret, "p", prefix),
                limit=policy.prefix_sends,
                window_ms=policy.prefix_window_seconds * 1000,
                lock_ms=policy.prefix_breaker_seconds * 1000,
            )
        )
    return tuple(counters)


def switch_counters(
    policy: LimitPolicy, secret: bytes, credential: Credential, address: str
) -> tuple[Counter, ...]:
    """A create that makes an already pending credential current again, sending nothing."""
    return (lockout(policy, secret, credential, cost=0), _address_requests(policy, secret, address))


def verify_counters(
    policy: LimitPolicy, secret: bytes, credential: Credential, address: str
) -> tuple[Counter, ...]:
    """A wrong code: one failure more for the credential, charged in the same atomic step
    that spends the carrier's ID, so concurrent wrong guesses can never overshoot
    `max_failures`."""
    return (
        lockout(policy, secret, credential, cost=1),
        Counter(
            "address-verifies",
            counter_key(secret, "v", address),
            policy.address_verifies,
            policy.address_window_seconds * 1000,
        ),
    )


def _address_requests(policy: LimitPolicy, secret: bytes, address: str) -> Counter:
    return Counter(
        "address-requests",
        counter_key(secret, "a", address),
        policy.address_requests,
        policy.address_window_seconds * 1000,
    )


def correct_code_counters(
    policy: LimitPolicy, secret: bytes, credential: Credential, address: str
) -> tuple[Counter, ...]:
    """A correct code: refused while the credential is locked (a lock is never lifted by a
    guess), counted against the address like any check; its step clears the failures."""
    return (
        lockout(policy, secret, credential, cost=0),
        Counter(
            "address-verifies",
            counter_key(secret, "v", address),
            policy.address_verifies,
            policy.address_window_seconds * 1000,
        ),
    )
