"""The command line: `--help` explains every command, `check` validates without serving."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import MASTER_KEY_TEXT

PRODUCTION = {
    "OTP_ENV": "production",
    "OTP_MASTER_KEY": MASTER_KEY_TEXT,
    "OTP_AUTOFILL_DOMAIN": "example.com",
    "OTP_EMAIL_PROVIDER": "smtp",
    "OTP_SMTP_HOST": "127.0.0.1",
    "OTP_EMAIL_FROM": "codes@example.com",
    "OTP_SMS_PROVIDER": "none",
    "OTP_ISSUER": "https://otp.example.com",
}


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m otpserver ARGS` in a clean environment (no OTP_* but `env`)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTP_")}
    return subprocess.run(
        [sys.executable, "-m", "otpserver", *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_help_explains_every_command() -> None:
    """`--help` names serve and check, says serve is the default, and each has its own help."""
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("serve", "check"):
        assert command in result.stdout
    assert "with no command, `serve` runs" in result.stdout
    for command in ("serve", "check"):
        own = run_cli(command, "--help")
        assert own.returncode == 0
        assert f"python -m otpserver {command}" in own.stdout


def test_an_unknown_command_is_a_usage_error() -> None:
    """A mistyped command exits with 2 and says which commands exist."""
    result = run_cli("serv")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
    assert "check" in result.stderr


def test_check_accepts_a_valid_production_configuration() -> None:
    """`check` on a complete production configuration exits 0 and serves nothing."""
    result = run_cli("check", env=PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout
    assert "OTP_ENV=production" in result.stdout


def test_check_names_a_bad_variable_and_exits_2() -> None:
    """`check` refuses a bad value with a line naming the variable, and exit status 2."""
    result = run_cli("check", env={**PRODUCTION, "OTP_PORT": "http"})
    assert result.returncode == 2
    assert "OTP_PORT" in result.stderr
    assert result.stdout == ""


def test_check_names_every_bad_variable_in_one_run() -> None:
    """Four mistakes in four variables, settings and operations alike, are four lines of
    one `check` run, each naming its variable, with exit status 2."""
    result = run_cli(
        "check",
        env={
            **PRODUCTION,
            "OTP_PORT": "http",
            "OTP_STORE_TIMEOUT_SECONDS": "-1",
            "OTP_LOG_FORMAT": "xml",
            "OTP_EVENTS_WEBHOOK_SECRET": "not-a-whsec",
        },
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith("otpserver: configuration error: ") for line in lines), lines
    for variable in (
        "OTP_PORT",
        "OTP_STORE_TIMEOUT_SECONDS",
        "OTP_LOG_FORMAT",
        "OTP_EVENTS_WEBHOOK_SECRET",
    ):
        assert sum(variable in line for line in lines) == 1, (variable, lines)
    assert len(lines) == 4
