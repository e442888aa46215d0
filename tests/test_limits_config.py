"""Limit settings from the environment: every knob documented, bad values named in one line."""

from __future__ import annotations

import ipaddress

import pytest

from otpserver.errors import ConfigError
from otpserver.settings.environment import ENV_VARS, Settings
from otpserver.settings.overrides import LIMIT_ENV_FIELDS, LimitOverrides
from tests.conftest import AppFactory

LIMIT_VARIABLES = {
    *LIMIT_ENV_FIELDS,
    "OTP_LIMIT_CHANNEL_SENDS_PER_HOUR",
    "OTP_SMS_ALLOWLIST",
    "OTP_SMS_DENYLIST",
    "OTP_TRUSTED_PROXIES",
    "OTP_PROXY_HEADER",
    "OTP_MEMORY_MAX_COUNTERS",
}


def test_every_limit_variable_is_documented() -> None:
    """Each variable the limits read has an `ENV_VARS` entry with a comment."""
    documented = {v.name: v for v in ENV_VARS}
    assert LIMIT_VARIABLES.issubset(documented)
    assert all(documented[name].comment for name in LIMIT_VARIABLES)


def test_unset_variables_keep_the_codes_limits() -> None:
    """With nothing set, no override is recorded and no proxy is trusted."""
    settings = Settings.from_env({})
    assert settings.limit_overrides == LimitOverrides()
    assert settings.trusted_proxies.networks == ()
    assert settings.trusted_proxies.header == "x-forwarded-for"
    assert settings.memory_max_counters == 1_000_000


def test_set_variables_become_overrides() -> None:
    """Numbers, channel budgets, destination lists and proxies are all read."""
    settings = Settings.from_env(
        {
            "OTP_LIMIT_MAX_FAILURES": "20",
            "OTP_SMS_PREFIX_SENDS": "4",
            "OTP_LIMIT_CHANNEL_SENDS_PER_HOUR": "phone=50, *=10",
            "OTP_SMS_ALLOWLIST": "gb,+353",
            "OTP_SMS_DENYLIST": "+4470",
            "OTP_TRUSTED_PROXIES": "10.0.0.0/8,unix",
            "OTP_PROXY_HEADER": "Forwarded",
            "OTP_MEMORY_MAX_COUNTERS": "5000",
        }
    )
    assert settings.limit_overrides == LimitOverrides(
        numbers={"max_failures": 20, "prefix_sends": 4},
        channel_sends_per_hour={"phone": 50, "*": 10},
        sms_allowlist=("GB", "+353"),
        sms_denylist=("+4470",),
    )
    assert settings.trusted_proxies.networks == (ipaddress.ip_network("10.0.0.0/8"),)
    assert settings.trusted_proxies.unix_socket
    assert settings.trusted_proxies.header == "forwarded"
    assert settings.memory_max_counters == 5000


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OTP_TRUSTED_PROXIES", "10.0.0.0/8, proxy.internal"),
        ("OTP_PROXY_HEADER", "x-real-ip"),
        ("OTP_LIMIT_CREDENTIAL_SENDS", "five"),
        ("OTP_LIMIT_CHANNEL_SENDS_PER_HOUR", "email"),
        ("OTP_LIMIT_CHANNEL_SENDS_PER_HOUR", "email=-1"),
        ("OTP_SMS_ALLOWLIST", "GB,Narnia"),
        ("OTP_SMS_DENYLIST", "4470"),
        ("OTP_MEMORY_MAX_COUNTERS", "0"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(name: str, value: str) -> None:
    """A bad value stops start-up with one line that begins with the variable's name."""
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({name: value})
    message = str(refused.value)
    assert message.startswith(name)
    assert "\n" not in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OTP_LIMIT_MAX_FAILURES", "101"),
        ("OTP_LIMIT_LOCKOUT_SECONDS", "0"),
        ("OTP_LIMIT_CHANNEL_SENDS_PER_HOUR", "sms=0"),
    ],
)
def test_out_of_range_limits_stop_the_app_from_starting(
    make_app: AppFactory, name: str, value: str
) -> None:
    """Ranges are checked with the code's defaults when the app is built."""
    with pytest.raises(ConfigError, match=f"^{name} "):
        make_app(limit_overrides=Settings.from_env({name: value}).limit_overrides)


def test_the_app_applies_the_overrides(make_app: AppFactory) -> None:
    """What the environment set is what the app enforces; the rest keeps the code's value."""
    app = make_app(limit_overrides=LimitOverrides(numbers={"credential_sends": 2}))
    assert app.state.limits.credential_sends == 2
    assert app.state.limits.max_failures == 10
