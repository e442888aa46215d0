"""Second-factor settings: defaults, bounds, and every bad variable reported at once."""

from __future__ import annotations

import pytest

from otpserver.errors import ConfigError
from otpserver.settings.environment import Settings
from otpserver.settings.factors import FactorSettings


def test_defaults_follow_the_spec() -> None:
    """Window 1, 5 failures per 15 minutes, 400-day sets and 30-day devices by default."""
    settings = FactorSettings.from_env({})
    assert settings == FactorSettings()
    assert (settings.totp_window, settings.totp_max_failures) == (1, 5)
    assert settings.totp_failure_window_seconds == 900
    assert (settings.backup_set_max_days, settings.trusted_device_days) == (400, 30)


def test_values_within_bounds_are_read() -> None:
    """Each variable sets its field."""
    settings = FactorSettings.from_env(
        {
            "OTP_TOTP_WINDOW": "0",
            "OTP_TOTP_ISSUER": "Example Co",
            "OTP_BACKUP_SET_MAX_DAYS": "30",
            "OTP_TRUSTED_DEVICE_DAYS": "7",
        }
    )
    assert (settings.totp_window, settings.totp_issuer) == (0, "Example Co")
    assert (settings.backup_set_max_seconds, settings.trusted_device_days) == (30 * 86400, 7)


def test_every_bad_variable_is_reported_at_once() -> None:
    """A window of 3, 31 device days and an issuer with a control character are one error
    naming all three variables, also through `Settings.from_env`."""
    environ = {
        "OTP_TOTP_WINDOW": "3",
        "OTP_TRUSTED_DEVICE_DAYS": "31",
        "OTP_TOTP_ISSUER": "bad\x07issuer",
    }
    for read in (FactorSettings.from_env, Settings.from_env):
        with pytest.raises(ConfigError) as caught:
            read(environ)
        text = str(caught.value)
        for name in ("OTP_TOTP_WINDOW", "OTP_TRUSTED_DEVICE_DAYS", "OTP_TOTP_ISSUER"):
            assert name in text, text
