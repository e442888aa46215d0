"""What the environment may change in the product's policy and limits: variable names, bounds,
and the parsed values, kept below both so the settings never import the rules they tune.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import phonenumbers

from otpserver.settings.defaults import MAX_TTL_SECONDS as MAX_TTL_SECONDS  # re-exported

MAX_FAILURES_CEILING = 100
"""NIST SP 800-63B rev 4 §3.2.2: at most 100 consecutive failures before a lockout."""
MAX_WINDOW_SECONDS = 7 * 86400
"""Long enough for any sane window or lockout; keys never outlive it."""
MAX_ALLOWANCE = 10**9


# Environment variable -> policy field, for the numbers an operator may override.
POLICY_ENV_FIELDS: Mapping[str, str] = {
    "OTP_LENGTH": "length",
    "OTP_TTL_SECONDS": "ttl_seconds",
    "OTP_MAX_ATTEMPTS": "max_attempts",
    "OTP_RESEND_COOLDOWN_SECONDS": "resend_cooldown_seconds",
    "OTP_MAX_RESENDS": "max_resends",
    "OTP_MAX_CREDENTIALS": "max_credentials",
}


# `OtpPolicy` field -> lowest and highest value allowed, from code or environment alike.
POLICY_BOUNDS: Mapping[str, tuple[int, int]] = {
    "length": (4, 16),
    "ttl_seconds": (1, MAX_TTL_SECONDS),
    "max_attempts": (1, 100),
    "resend_cooldown_seconds": (0, MAX_TTL_SECONDS),
    "max_resends": (0, 100),
    "max_credentials": (1, 5),
}


_PREFIX_ENTRY = re.compile(r"^\+[0-9]{1,15}$")


_REGION_ENTRY = re.compile(r"^[A-Z]{2}$")


# Environment variable -> `LimitPolicy` field, for the numbers an operator may override.
LIMIT_ENV_FIELDS: Mapping[str, str] = {
    "OTP_LIMIT_MAX_FAILURES": "max_failures",
    "OTP_LIMIT_FAILURE_WINDOW_SECONDS": "failure_window_seconds",
    "OTP_LIMIT_LOCKOUT_SECONDS": "lockout_seconds",
    "OTP_LIMIT_CREDENTIAL_SENDS": "credential_sends",
    "OTP_LIMIT_CREDENTIAL_WINDOW_SECONDS": "credential_window_seconds",
    "OTP_LIMIT_ADDRESS_REQUESTS": "address_requests",
    "OTP_LIMIT_ADDRESS_VERIFIES": "address_verifies",
    "OTP_LIMIT_ADDRESS_WINDOW_SECONDS": "address_window_seconds",
    "OTP_SMS_PREFIX_DIGITS": "prefix_digits",
    "OTP_SMS_PREFIX_SENDS": "prefix_sends",
    "OTP_SMS_PREFIX_WINDOW_SECONDS": "prefix_window_seconds",
    "OTP_SMS_PREFIX_BREAKER_SECONDS": "prefix_breaker_seconds",
}


# `LimitPolicy` field -> lowest and highest value allowed, from code or environment alike.
LIMIT_BOUNDS: Mapping[str, tuple[int, int]] = {
    "max_failures": (1, MAX_FAILURES_CEILING),
    "failure_window_seconds": (1, MAX_WINDOW_SECONDS),
    "lockout_seconds": (1, MAX_WINDOW_SECONDS),
    "credential_sends": (1, MAX_ALLOWANCE),
    "credential_window_seconds": (1, MAX_WINDOW_SECONDS),
    "address_requests": (1, MAX_ALLOWANCE),
    "address_verifies": (1, MAX_ALLOWANCE),
    "address_window_seconds": (1, MAX_WINDOW_SECONDS),
    "prefix_digits": (1, 15),
    "prefix_sends": (1, MAX_ALLOWANCE),
    "prefix_window_seconds": (1, MAX_WINDOW_SECONDS),
    "prefix_breaker_seconds": (1, MAX_WINDOW_SECONDS),
}


@dataclass(frozen=True, slots=True)
class LimitOverrides:
    """What the environment sets on top of `custom/limits.py` (None/empty: keep the code's)."""

    numbers: Mapping[str, int] = field(default_factory=dict)
    channel_sends_per_hour: Mapping[str, int] = field(default_factory=dict)
    sms_allowlist: tuple[str, ...] | None = None
    sms_denylist: tuple[str, ...] | None = None


def is_destination_entry(entry: str) -> bool:
    """True for an ISO 3166 region code (`GB`) or an E.164 prefix (`+4479`)."""
    if _REGION_ENTRY.match(entry):
        return entry in phonenumbers.SUPPORTED_REGIONS
    return bool(_PREFIX_ENTRY.match(entry))


def parse_destinations(text: str) -> tuple[str, ...]:
    """Split a comma list of region codes and +prefixes; raise ValueError on a bad entry."""
    entries = tuple(e.strip().upper() for e in text.split(",") if e.strip())
    if not all(is_destination_entry(e) for e in entries):
        raise ValueError("entries must be region codes like GB or E.164 prefixes like +4479")
    return entries
