"""The command line: `--help` explains every command, `check` validates without serving."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from tests.conftest import MASTER_KEY_TEXT
from tests.support.redis_server import free_port

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


def run_cli(
    *args: str, env: dict[str, str] | None = None, module: str = "otpserver"
) -> subprocess.CompletedProcess[str]:
    """`python -m otpserver ARGS` in a clean environment (no OTP_* but `env`); `module`
    `tests.support.server` runs the same command line on the tests' own hooks."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTP_")}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_help_explains_every_command() -> None:
    """`--help` names every command, says serve is the default, and each has its own help."""
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("serve", "check", "apikey", "keys"):
        assert command in result.stdout
    assert "with no command, `serve` runs" in result.stdout
    for command in ("serve", "check", "apikey new", "keys status"):
        own = run_cli(*command.split(), "--help")
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


def test_check_with_store_asks_the_store(redis_url: str) -> None:
    """`check --store` reports a reachable store as ready (exit 0), and an unreachable one
    with its error and exit status 1, after the configuration itself passed."""
    ready = run_cli("check", "--store", env={**PRODUCTION, "OTP_STORE_URL": redis_url})
    assert ready.returncode == 0, ready.stderr
    assert "store ready" in ready.stdout
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    down = run_cli(
        "check",
        "--store",
        env={**PRODUCTION, "OTP_STORE_URL": nowhere, "OTP_STORE_TIMEOUT_SECONDS": "0.3"},
    )
    assert down.returncode == 1
    assert "configuration OK" in down.stdout
    assert "otpserver: the store is not ready" in down.stderr
    assert "ConnectionError" in down.stderr


def test_a_taken_metrics_port_stops_start_up_with_one_line() -> None:
    """A metrics port another process holds stops start-up with status 1 and a line naming
    the variables, not a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_cli(
            env={
                "OTP_ENV": "development",
                "OTP_PORT": str(free_port()),
                "OTP_METRICS_PORT": str(port),
            }
        )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"otpserver: cannot serve metrics on 127.0.0.1:{port} (OTP_METRICS_HOST")
    assert "Traceback" not in result.stderr
