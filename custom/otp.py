"""Edit this file to change the rules every code follows: length, lifetime, attempts, resends.

Contract
    `POLICY` is an `OtpPolicy`; the environment may override single numbers
    (`OTP_LENGTH`, `OTP_TTL_SECONDS`, `OTP_MAX_ATTEMPTS`, `OTP_RESEND_COOLDOWN_SECONDS`,
    `OTP_MAX_RESENDS`, `OTP_MAX_CREDENTIALS`). `generate_code(policy)` returns a new code of
    exactly `policy.length` characters from `policy.alphabet`.

What the core guarantees before calling `generate_code`
    The credential is valid and the request is allowed to send: a code is only made when
    it will be sent. The policy has passed `OtpPolicy.checked()` at start-up (lifetime at
    most 600 s, at least 4 characters, and so on), so an impossible policy never serves.

What to raise
    Nothing. A generator must never fail; if it cannot draw from the OS CSPRNG, let the
    error propagate (500) rather than fall back to a weaker source. Never use `random`.

Trade-offs of the default
    Six decimal digits (10^6 codes) with 3 attempts per code gives an attacker a
    3-in-a-million chance per code; the abuse limits cap how many codes they can get.
    Digits type fastest on phones. For codes people read aloud, an alphabet without
    look-alikes (e.g. "ACDEFHJKMNPRTUVWXY3479") with length 6 gives ~3.7·10^7 codes.
    `failure_block_seconds` slows guessing within a code: no wait after the first wrong
    code, 5 seconds after the second.
"""

from __future__ import annotations

from otpserver.otp.codes import random_code
from otpserver.otp.policy import OtpPolicy

POLICY = OtpPolicy(
    length=6,
    alphabet="0123456789",
    ttl_seconds=300,
    max_attempts=3,
    resend_cooldown_seconds=30,
    max_resends=3,
    max_credentials=3,
    failure_block_seconds=(0, 5),
)


def generate_code(policy: OtpPolicy) -> str:
    """A uniformly random code from the OS CSPRNG (rejection sampling, no modulo bias)."""
    return random_code(policy.length, policy.alphabet)
