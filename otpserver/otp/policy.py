"""Per-code policy: length, alphabet, lifetime, attempts, resends and credentials per cookie.

The defaults live in `custom/otp.py`; environment variables may override single numbers
(`Settings.policy_overrides`). `OtpPolicy.checked` enforces the invariants at start-up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from otpserver.errors import ConfigError
from otpserver.settings.overrides import MAX_TTL_SECONDS

CodeGenerator = Callable[["OtpPolicy"], str]
"""Returns a fresh code drawn uniformly from the policy's alphabet with the policy's length."""


@dataclass(frozen=True, slots=True)
class OtpPolicy:
    """The rules every pending code follows.

    `failure_block_seconds[n]` is how long verification stays blocked after the (n+1)-th
    wrong code for one entry; the last value repeats. Zero means no block.
    """

    length: int = 6
    alphabet: str = "0123456789"
    ttl_seconds: int = 300
    max_attempts: int = 3
    resend_cooldown_seconds: int = 30
    max_resends: int = 3
    max_credentials: int = 3
    failure_block_seconds: tuple[int, ...] = (0, 5)

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
        """Return self, or raise `ConfigError` naming the first broken invariant."""
        alphabet = self.alphabet
        problems = [
            ("OTP_LENGTH", 4 <= self.length <= 16, "must be between 4 and 16"),
            (
                "alphabet",
                len(alphabet) >= 2
                and len(set(alphabet)) == len(alphabet)
                and alphabet.isascii()
                and alphabet.isprintable()
                and not any(c.isspace() for c in alphabet),
                "must be at least two distinct printable ASCII characters",
            ),
            (
                "OTP_TTL_SECONDS",
                1 <= self.ttl_seconds <= MAX_TTL_SECONDS,
                f"must be between 1 and {MAX_TTL_SECONDS}",
            ),
            ("OTP_MAX_ATTEMPTS", 1 <= self.max_attempts <= 100, "must be between 1 and 100"),
            (
                "OTP_RESEND_COOLDOWN_SECONDS",
                0 <= self.resend_cooldown_seconds <= MAX_TTL_SECONDS,
                f"must be between 0 and {MAX_TTL_SECONDS}",
            ),
            ("OTP_MAX_RESENDS", 0 <= self.max_resends <= 100, "must be between 0 and 100"),
            ("OTP_MAX_CREDENTIALS", 1 <= self.max_credentials <= 5, "must be between 1 and 5"),
            (
                "failure_block_seconds",
                all(0 <= s <= MAX_TTL_SECONDS for s in self.failure_block_seconds),
                f"values must be between 0 and {MAX_TTL_SECONDS}",
            ),
        ]
        for name, ok, why in problems:
            if not ok:
                raise ConfigError(f"{name} {why}")
        return self
