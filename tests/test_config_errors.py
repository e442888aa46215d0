"""Configuration problems are reported all at once, one line each naming its variable."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

from otpserver.errors import ConfigError
from otpserver.limits.rules import LimitPolicy
from otpserver.otp.policy import OtpPolicy
from otpserver.settings.delivery import DeliveryConfig
from otpserver.settings.environment import ENV_VARS, Settings
from otpserver.settings.reader import ConfigProblems, EnvReader, collecting

SEVERAL_BAD = {
    "OTP_ENV": "staging",
    "OTP_PORT": "http",
    "OTP_STORE_URL": "mysql://db",
    "OTP_MASTER_KEY": "c2hvcnQ",
    "OTP_CORS_ORIGINS": "*",
    "OTP_TTL_SECONDS": "601",
    "OTP_LIMIT_MAX_FAILURES": "101",
    "OTP_LIMIT_CHANNEL_SENDS_PER_HOUR": "email",
    "OTP_SMS_ALLOWLIST": "Narnia",
    "OTP_SMTP_PORT": "0",
    "OTP_TWILIO_FROM": "nobody",
    "OTP_DEFAULT_LOCALE": "!!",
}


def problems_of(environ: dict[str, str]) -> tuple[str, ...]:
    """The lines `Settings.from_env` refuses `environ` with."""
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(environ)
    return refused.value.problems


def test_settings_report_every_bad_variable_in_one_error() -> None:
    """Twelve bad variables across settings, policy, limits and delivery give twelve lines,
    each starting with its variable's name, in one `ConfigError`."""
    problems = problems_of(SEVERAL_BAD)
    assert sorted(line.split(" ", 1)[0] for line in problems) == sorted(SEVERAL_BAD)
    assert str(ConfigError(*problems)).splitlines() == list(problems)


def test_a_single_bad_variable_is_still_one_line() -> None:
    """One mistake gives exactly one line, whatever else it could have upset."""
    assert problems_of({"OTP_SMTP_USERNAME": "bad\x01name", "OTP_SMTP_PASSWORD": "x"}) == (
        "OTP_SMTP_USERNAME must not contain control characters",
    )


def test_delivery_reports_every_bad_variable_on_its_own() -> None:
    """`DeliveryConfig.from_env` alone also lists every problem, required values included."""
    with pytest.raises(ConfigError) as refused:
        DeliveryConfig.from_env(
            {
                "OTP_EMAIL_PROVIDER": "smtp",
                "OTP_SMS_PROVIDER": "webhook",
                "OTP_SMS_WEBHOOK_SECRET": "short",
                "OTP_HTTP_RETRIES": "9",
            }
        )
    assert [line.split(" ", 1)[0] for line in refused.value.problems] == [
        "OTP_SMTP_HOST",
        "OTP_EMAIL_FROM",
        "OTP_SMS_WEBHOOK_SECRET",
        "OTP_SMS_WEBHOOK_URL",
        "OTP_HTTP_RETRIES",
    ]


def test_policies_name_every_broken_invariant() -> None:
    """`checked()` on a policy with several broken fields names all of them at once."""
    with pytest.raises(ConfigError) as policy:
        OtpPolicy(length=3, ttl_seconds=601, alphabet="00").checked()
    assert [line.split(" ", 1)[0] for line in policy.value.problems] == [
        "OTP_LENGTH",
        "OTP_TTL_SECONDS",
        "alphabet",
    ]
    broken = dataclasses.replace(
        LimitPolicy(), max_failures=0, lockout_seconds=0, sms_denylist=("44",)
    )
    with pytest.raises(ConfigError) as limits:
        broken.checked()
    assert [line.split(" ", 1)[0] for line in limits.value.problems] == [
        "OTP_LIMIT_MAX_FAILURES",
        "OTP_LIMIT_LOCKOUT_SECONDS",
        "OTP_SMS_DENYLIST",
    ]


def test_a_reader_without_a_collector_raises_at_once() -> None:
    """Code that reads without a collector keeps the raise-on-first behaviour."""
    reader = EnvReader({"OTP_PORT": "x"}, ENV_VARS)
    with pytest.raises(ConfigError, match=r"^OTP_PORT must be an integer"):
        reader.integer("OTP_PORT", 0, 65535)


def test_a_collecting_reader_carries_on_with_the_documented_default() -> None:
    """With a collector, a bad value is recorded and the documented default is used."""
    problems = ConfigProblems()
    reader = EnvReader({"OTP_PORT": "x", "OTP_ENV": "nope"}, ENV_VARS, problems)
    assert reader.integer("OTP_PORT", 0, 65535) == 8000
    assert reader.choice("OTP_ENV", ("production", "development")) == "production"
    assert problems.has("OTP_PORT", "OTP_ENV")
    assert len(problems.lines) == 2


def test_collecting_raises_what_it_found_on_exit_unless_given_a_collector() -> None:
    """`collecting(None)` raises everything at the end; a shared collector keeps them."""

    def report_two() -> None:
        with collecting(None) as found:
            found.add("OTP_A", "OTP_A is bad")
            found.add("OTP_B", "OTP_B is bad")

    with pytest.raises(ConfigError) as refused:
        report_two()
    assert refused.value.problems == ("OTP_A is bad", "OTP_B is bad")
    shared = ConfigProblems()
    with collecting(shared) as found:
        found.add("OTP_A", "OTP_A is bad")
    assert shared.lines == ("OTP_A is bad",)


def test_python_m_otpserver_prints_every_problem() -> None:
    """`python -m otpserver` exits with 2 and prints one stderr line per problem."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTP_")}
    bad = {"OTP_PORT": "http", "OTP_WORKERS": "0", "OTP_STORE_URL": "mysql://x"}
    result = subprocess.run(
        [sys.executable, "-m", "otpserver"],
        env={**clean, **bad},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert [line.split(": ", 2)[2].split(" ", 1)[0] for line in lines] == [
        "OTP_STORE_URL",
        "OTP_PORT",
        "OTP_WORKERS",
    ]
    assert all(line.startswith("otpserver: configuration error: ") for line in lines)


def test_a_worker_timeout_is_a_positive_number_of_seconds() -> None:
    """`OTP_WORKER_TIMEOUT_SECONDS` takes seconds above 0 (a worker is never killed at once)
    up to an hour; the supervisor reads it as given."""
    assert problems_of({"OTP_WORKER_TIMEOUT_SECONDS": "0"}) == (
        "OTP_WORKER_TIMEOUT_SECONDS must be a number of seconds above 0 and at most 3600",
    )
    assert Settings.from_env({"OTP_WORKER_TIMEOUT_SECONDS": "7.5"}).worker_timeout_seconds == 7.5
