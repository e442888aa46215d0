"""Per-code policy: length, alphabet, lifetime, attempts, resends and credentials per cookie.

The defaults live in `otpserver.settings.defaults` (`custom/otp.py` may change them);
environment variables may override single numbers (`Settings.policy_overrides`).
`OtpPolicy.checked` enforces the invariants at start-up and names every broken one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from otpserver.errors import ConfigError
from otpserver.settings import defaults
from otpserver.settings.overrides import MAX_TTL_SECONDS, POLICY_BOUNDS, POLICY_ENV_FIELDS

CodeGenerator = Callable[["OtpPolicy"], str]
"""Returns a fresh code drawn uniformly from the policy's alphabet with the policy's length."""


@dataclass(frozen=True, slots=True)
class OtpPolicy:
    """The rules every pending code follows; the defaults are `otpserver.settings.defaults`.

    `failure_block_seconds[n]` is how long verification stays blocked after the (n+1)-th
    wrong code for one entry; the last value repeats. Zero means no block.
    """

    length: int = defaults.CODE_LENGTH
    alphabet: str = defaults.CODE_ALPHABET
    ttl_seconds: int = defaults.CODE_TTL_SECONDS
    max_attempts: int = defaults.MAX_ATTEMPTS
    resend_cooldown_seconds: int = defaults.RESEND_COOLDOWN_SECONDS
    max_resends: int = defaults.MAX_RESENDS
    max_credentials: int = defaults.MAX_CREDENTIALS
    failure_block_seconds: tuple[int, ...] = defaults.FAILURE_BLOCK_SECONDS

    def block_after(self, failures: int) -> int:
        """Seconds of verify block after `failures` consecutive wrong codes (>= 1)."""
        if not self.failure_block_seconds or failures < 1:
            return 0
        index = min(failures, len(self.failure_block_seconds)) - 1
        return self.failure_block_seconds[index]

    def with_overrides(self, overrides: Mapping[str, int]) -> OtpPolicy:
        """A copy with the given fields replaced (names as in `POLICY_ENV_FIELDS` values)."""
        changes: dict[str, Any] = dict(overrides)
        return dataclasses.replace(self, **changes).checked()

    def checked(self) -> OtpPolicy:
        """Return self, or raise one `ConfigError` naming every broken invariant."""
        problems = [
            f"{variable} must be between {low} and {high}"
            for variable, name in POLICY_ENV_FIELDS.items()
            for low, high in [POLICY_BOUNDS[name]]
            if not low <= getattr(self, name) <= high
        ]
        alphabet = self.alphabet
        if not (
            len(alphabet) >= 2
            and len(set(alphabet)) == len(alphabet)
            and alphabet.isascii()
            and alphabet.isprintable()
            and not any(c.isspace() for c in alphabet)
        ):
            problems.append("alphabet must be at least two distinct printable ASCII characters")
        if not all(0 <= s <= MAX_TTL_SECONDS for s in self.failure_block_seconds):
            problems.append(f"failure_block_seconds values must be between 0 and {MAX_TTL_SECONDS}")
        if problems:
            raise ConfigError(*problems)
        return self
