"""Second-factor settings (SPEC §13-§15): TOTP window, failure limits, backup-set and
trusted-device lifetimes.

`FACTOR_ENV_VARS` lists the variables with their defaults and comments; `FactorSettings`
reads them once, and every refusal is a `ConfigError` whose one line names the variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from otpserver.settings.reader import ConfigProblems, EnvReader, EnvVar, collecting

FACTOR_ENV_VARS: tuple[EnvVar, ...] = (
    EnvVar(
        "OTP_TOTP_WINDOW",
        "1",
        "TOTP steps accepted either side of now, 0-2 (1: a code works 30 s early or late)",
    ),
    EnvVar(
        "OTP_TOTP_MAX_FAILURES",
        "5",
        "wrong TOTP codes per enrolment before it is locked for the rest of the window",
    ),
    EnvVar(
        "OTP_TOTP_FAILURE_WINDOW_SECONDS",
        "900",
        "the window OTP_TOTP_MAX_FAILURES counts in, from the first wrong code",
    ),
    EnvVar(
        "OTP_TOTP_ISSUER",
        "otpserver",
        "issuer name authenticator apps show when an enrolment request names none",
    ),
    EnvVar(
        "OTP_BACKUP_MAX_FAILURES",
        "5",
        "wrong backup codes per subject before redemption is locked (a counter of its own)",
    ),
    EnvVar(
        "OTP_BACKUP_FAILURE_WINDOW_SECONDS",
        "900",
        "the window OTP_BACKUP_MAX_FAILURES counts in, from the first wrong code",
    ),
    EnvVar(
        "OTP_BACKUP_SET_MAX_DAYS",
        "400",
        "a backup code set's maximum life; older sets answer expired (spent markers live as long)",
    ),
    EnvVar(
        "OTP_TRUSTED_DEVICE_DAYS",
        "30",
        "longest trust a device may get, 1-30 days (also the default; revocations live as long)",
    ),
)


@dataclass(frozen=True, slots=True)
class FactorSettings:
    """TOTP and backup-code policy the deployment chooses."""

    totp_window: int = 1
    totp_max_failures: int = 5
    totp_failure_window_seconds: int = 900
    totp_issuer: str = "otpserver"
    backup_max_failures: int = 5
    backup_failure_window_seconds: int = 900
    backup_set_max_days: int = 400
    trusted_device_days: int = 30

    @property
    def backup_set_max_seconds(self) -> int:
        """A set's maximum life in seconds."""
        return self.backup_set_max_days * 86400

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str], problems: ConfigProblems | None = None
    ) -> FactorSettings:
        """Read and check the second-factor variables, reporting every bad one at once."""
        with collecting(problems) as found:
            reader = EnvReader(environ, FACTOR_ENV_VARS, found)
            issuer = reader.required("OTP_TOTP_ISSUER")
            if len(issuer) > 128 or not issuer.isprintable():
                reader.problem(
                    "OTP_TOTP_ISSUER", "OTP_TOTP_ISSUER must be at most 128 printable characters"
                )
            # Returned from inside the block: leaving it raises every problem found.
            return cls(
                totp_window=reader.integer("OTP_TOTP_WINDOW", 0, 2),
                totp_max_failures=reader.integer("OTP_TOTP_MAX_FAILURES", 1, 100),
                totp_failure_window_seconds=reader.integer(
                    "OTP_TOTP_FAILURE_WINDOW_SECONDS", 60, 86400
                ),
                totp_issuer=issuer,
                backup_max_failures=reader.integer("OTP_BACKUP_MAX_FAILURES", 1, 100),
                backup_failure_window_seconds=reader.integer(
                    "OTP_BACKUP_FAILURE_WINDOW_SECONDS", 60, 86400
                ),
                backup_set_max_days=reader.integer("OTP_BACKUP_SET_MAX_DAYS", 1, 3650),
                trusted_device_days=reader.integer("OTP_TRUSTED_DEVICE_DAYS", 1, 30),
            )
