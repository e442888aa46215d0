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

Per-address limits also apply to the networks around the address (IPv4 /24, IPv6 /56 and
/48), because one subscriber often holds a whole range: counted per address alone, a home
/56 is 256 fresh allowances. The widest of those networks may also spend only a share of
each channel's hourly budget, so no single network can deny a channel to everyone.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import phonenumbers

from otpserver.crypto.mac import hmac_sha256
from otpserver.errors import ConfigError
from otpserver.otp.addresses import canonical_mailbox
from otpserver.otp.credentials import Credential
from otpserver.settings import defaults, hardening
from otpserver.settings.defaults import ANY_CHANNEL
from otpserver.settings.hardening import ALL_LIMIT_BOUNDS, ALL_LIMIT_ENV_FIELDS
from otpserver.settings.overrides import MAX_ALLOWANCE, LimitOverrides, is_destination_entry
from otpserver.settings.overrides import (
    MAX_FAILURES_CEILING as MAX_FAILURES_CEILING,  # re-exported: the NIST ceiling
)
from otpserver.stores.counters import ALWAYS, IF_ROOM, Counter

HOUR_SECONDS = 3600
IPV6_WIDER_PREFIXES = (56, 48)
"""An IPv6 client's /64 also counts toward these networks: a home line often gets a /56, a
site a /48."""


@dataclass(frozen=True, slots=True)
class LimitPolicy:
    """How much each credential, client address, channel and phone prefix may ask for.

    Counts are per window; windows are in seconds and start at a counter's first hit. A
    credential's wrong codes are counted from the first one for `failure_window_seconds`;
    the `max_failures`-th locks it for `lockout_seconds`, after which counting starts over.
    Beside that short count, `failure_cap` consecutive wrong codes within
    `failure_cap_window_seconds` lock it for that whole window (NIST SP 800-63B §3.2.2),
    unless a correct code or the host (`Limiter.forget_failures`) clears both counts.
    `network_requests`/`network_verifies` apply per IPv4 /24 and per IPv6 /56 and /48, per
    `address_window_seconds`; `network_budget_percent` of each channel's hourly budget is
    all that one IPv4 /24 or IPv6 /48 may spend.
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
    failure_cap: int = hardening.LIMIT_FAILURE_CAP
    failure_cap_window_seconds: int = hardening.LIMIT_FAILURE_CAP_WINDOW_SECONDS
    network_requests: int = hardening.LIMIT_NETWORK_REQUESTS
    network_verifies: int = hardening.LIMIT_NETWORK_VERIFIES
    network_budget_percent: int = hardening.LIMIT_NETWORK_BUDGET_PERCENT

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
            for variable, name in ALL_LIMIT_ENV_FIELDS.items()
            for low, high in [ALL_LIMIT_BOUNDS[name]]
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
    of the message, which keeps an email and a phone number of the same text apart. Email
    addresses are keyed on their canonical mailbox, so `+tags`, Gmail dots and
    googlemail.com give no extra sends or guesses."""
    address = credential.address
    if "@" in address:
        address = canonical_mailbox(address)
    digest = hmac_sha256(secret, f"c\0{credential.channel}\0{address}".encode())
    return b"f:" + digest[:16].hex().encode(), b"s:" + digest[16:].hex().encode()


LOCKOUT_KIND = "failures"
"""The kind of the count whose refusal locks a credential (`lockout`)."""
FAILURE_CAP_KIND = "failure-cap"
"""The kind of the long count beside it, which a lockout that ends does not restart."""
FAILURE_KINDS = frozenset({LOCKOUT_KIND, FAILURE_CAP_KIND})
"""The kinds of the two counts `failure_keys` names, as the plans build them."""


def failure_keys(secret: bytes, credential: Credential) -> tuple[bytes, bytes]:
    """Both failure counts of a credential: the short lockout's and the long cap's (`t:`,
    the same digest under another prefix), which a correct code or the host clears."""
    failures_key = credential_keys(secret, credential)[0]
    return failures_key, _cap_key(failures_key)


def _cap_key(failures_key: bytes) -> bytes:
    return b"t:" + failures_key[2:]


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
    # built from keywords costs twice as much. The field order is `Counter`'s. Failure
    # counts are always kept, even in a full store: losing one would hand out guesses.
    return Counter(
        LOCKOUT_KIND,
        key,
        policy.max_failures,
        policy.failure_window_seconds * 1000,
        policy.lockout_seconds * 1000,
        cost,
        ALWAYS,
    )


def _failure_cap(policy: LimitPolicy, failures_key: bytes, cost: int) -> Counter:
    """The long count beside the lockout: a lockout that ends does not restart it."""
    window_ms = policy.failure_cap_window_seconds * 1000
    return Counter(
        FAILURE_CAP_KIND,
        _cap_key(failures_key),
        policy.failure_cap,
        window_ms,
        window_ms,
        cost,
        ALWAYS,
    )


@functools.lru_cache(maxsize=4096)
def wider_networks(address: str) -> tuple[str, ...]:
    """The networks around a per-address bucket that also get limits: an IPv4 address's
    /24; an IPv6 /64's /56 and /48 (widest last); none for `unknown`.

    Remembering a few thousand answers saves parsing an IPv6 bucket on every request.
    """
    if "/" in address:
        network = ipaddress.ip_network(address, strict=False)
        if isinstance(network, ipaddress.IPv6Network):
            return tuple(str(network.supernet(new_prefix=p)) for p in IPV6_WIDER_PREFIXES)
        return ()
    head, dot, _ = address.rpartition(".")
    if dot and head.count(".") == 2:
        return (f"{head}.0/24",)
    return ()


def send_counters(
    policy: LimitPolicy, secret: bytes, credential: Credential, address: str
) -> tuple[Counter, ...]:
    """A create or resend that sends a code: refused while the credential is locked."""
    failures_key, sends_key = credential_keys(secret, credential)
    networks = wider_networks(address)
    counters = [
        _lockout(policy, failures_key, cost=0),
        _failure_cap(policy, failures_key, cost=0),
        Counter(
            "credential-sends",
            sends_key,
            policy.credential_sends,
            policy.credential_window_seconds * 1000,
        ),
        *_address_requests(policy, secret, address, networks, cost=1),
        Counter(
            "channel-budget",
            channel_key(secret, credential.channel),
            policy.channel_budget(credential.channel),
            HOUR_SECONDS * 1000,
        ),
    ]
    if networks:
        budget = policy.channel_budget(credential.channel)
        counters.append(
            Counter(
                "network-budget",
                counter_key(secret, "b", f"{credential.channel}\0{networks[-1]}"),
                max(1, budget * policy.network_budget_percent // 100),
                HOUR_SECONDS * 1000,
            )
        )
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
    """A create that makes an already pending credential current again, sending nothing.

    Everything is checked and nothing charged: a request that sends nothing must not file
    a counter, or switching back and forth from fresh addresses fills the store for free.
    """
    failures_key = credential_keys(secret, credential)[0]
    return (
        _lockout(policy, failures_key, cost=0),
        _failure_cap(policy, failures_key, cost=0),
        *_address_requests(policy, secret, address, wider_networks(address), cost=0),
    )


def verify_counters(
    policy: LimitPolicy, secret: bytes, credential: Credential, address: str
) -> tuple[Counter, ...]:
    """A wrong code: one failure more for the credential (and for its long cap), charged in
    the same atomic step that spends the carrier's ID, so concurrent wrong guesses can never
    overshoot `max_failures`."""
    failures_key = credential_keys(secret, credential)[0]
    return (
        _lockout(policy, failures_key, cost=1),
        _failure_cap(policy, failures_key, cost=1),
        *_verifies(policy, secret, address),
    )


def refused_counters(policy: LimitPolicy, secret: bytes, address: str) -> tuple[Counter, ...]:
    """A create refused before any credential was known (an invalid body): it counts against
    the address and its networks like any other request, so refusing costs the server no
    more than answering."""
    return _address_requests(policy, secret, address, wider_networks(address), cost=1)


def _address_requests(
    policy: LimitPolicy, secret: bytes, address: str, networks: tuple[str, ...], cost: int
) -> tuple[Counter, ...]:
    window_ms = policy.address_window_seconds * 1000
    return (
        Counter(
            "address-requests",
            counter_key(secret, "a", address),
            policy.address_requests,
            window_ms,
            0,
            cost,
        ),
        *(
            Counter(
                "network-requests",
                counter_key(secret, "n", network),
                policy.network_requests,
                window_ms,
                0,
                cost,
            )
            for network in networks
        ),
    )


def correct_code_counters(
    policy: LimitPolicy, secret: bytes, credential: Credential, address: str
) -> tuple[Counter, ...]:
    """A correct code: refused while the credential is locked or capped (a lock is never
    lifted by a guess), counted against the address like any check; its step clears both
    failure counts (`failure_keys`)."""
    failures_key = credential_keys(secret, credential)[0]
    return (
        _lockout(policy, failures_key, cost=0),
        _failure_cap(policy, failures_key, cost=0),
        *_verifies(policy, secret, address),
    )


def _verifies(policy: LimitPolicy, secret: bytes, address: str) -> tuple[Counter, ...]:
    # Verifications come only with a code sent, so these are bounded by the sends: in a
    # full store they may be skipped rather than block the check of a right code.
    window_ms = policy.address_window_seconds * 1000
    return (
        Counter(
            "address-verifies",
            counter_key(secret, "v", address),
            policy.address_verifies,
            window_ms,
            0,
            1,
            IF_ROOM,
        ),
        *(
            Counter(
                "network-verifies",
                counter_key(secret, "w", network),
                policy.network_verifies,
                window_ms,
                0,
                1,
                IF_ROOM,
            )
            for network in wider_networks(address)
        ),
    )
