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
    Decimal digits type fastest on phones. With `max_attempts` tries per code an attacker
    guesses one in `10**length / max_attempts` codes; the abuse limits cap how many codes
    they can get. For codes people read aloud, an alphabet without look-alikes (e.g.
    "ACDEFHJKMNPRTUVWXY3479") gives 22**length codes. `failure_block_seconds` slows
    guessing within a code: no wait after the first wrong code, a few seconds after the
    second. The shipped values are in the README's configuration table (they come from
    `otpserver/settings/defaults.py`, the one place they are written).
"""

from __future__ import annotations

from otpserver import OtpPolicy, random_code

POLICY = OtpPolicy()
"""The shipped defaults (see the README's configuration table). To change a rule, name it:
`OtpPolicy(length=8, alphabet="ACDEFHJKMNPRTUVWXY3479", ttl_seconds=600)`; fields you leave
out keep their defaults: `length`, `alphabet`, `ttl_seconds`, `max_attempts`,
`resend_cooldown_seconds`, `max_resends`, `max_credentials`, `failure_block_seconds`."""


def generate_code(policy: OtpPolicy) -> str:
    """A uniformly random code from the OS CSPRNG (rejection sampling, no modulo bias)."""
    return random_code(policy.length, policy.alphabet)
