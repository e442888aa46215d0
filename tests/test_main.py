"""`python -m otpserver`: configuration errors stop start-up with one line naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from otpserver.errors import ConfigError
from otpserver.settings.environment import Settings, parse_master_key
from tests.conftest import MASTER_KEY_TEXT


def run_main(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTP_")}
    return subprocess.run(
        [sys.executable, "-m", "otpserver"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"OTP_ENV": "development", "OTP_WORKERS": "2"}, "OTP_WORKERS"),
        ({"OTP_ENV": "production"}, "OTP_MASTER_KEY"),
        ({"OTP_ENV": "production", "OTP_MASTER_KEY": MASTER_KEY_TEXT}, "OTP_AUTOFILL_DOMAIN"),
        (
            {
                "OTP_ENV": "production",
                "OTP_MASTER_KEY": MASTER_KEY_TEXT,
                "OTP_AUTOFILL_DOMAIN": "example.com",
            },
            "OTP_EMAIL_PROVIDER=console",
        ),
        (
            {
                "OTP_ENV": "production",
                "OTP_MASTER_KEY": MASTER_KEY_TEXT,
                "OTP_AUTOFILL_DOMAIN": "example.com",
                "OTP_TEST_CREDENTIALS": "ada@example.com=123456",
            },
            "OTP_TEST_CREDENTIALS",
        ),
        ({"OTP_ENV": "development", "OTP_TEST_CREDENTIALS": "a@b.co=12"}, "OTP_TEST_CREDENTIALS"),
        ({"OTP_ENV": "development", "OTP_TEST_CREDENTIALS": "nocode"}, "OTP_TEST_CREDENTIALS"),
        ({"OTP_ENV": "staging"}, "OTP_ENV"),
        ({"OTP_ENV": "development", "OTP_PORT": "http"}, "OTP_PORT"),
        ({"OTP_ENV": "development", "OTP_TTL_SECONDS": "601"}, "OTP_TTL_SECONDS"),
        ({"OTP_ENV": "development", "OTP_MASTER_KEY": "c2hvcnQ"}, "OTP_MASTER_KEY"),
        ({"OTP_ENV": "development", "OTP_STORE_URL": "mysql://x"}, "OTP_STORE_URL"),
        ({"OTP_ENV": "development", "OTP_CORS_ORIGINS": "*"}, "OTP_CORS_ORIGINS"),
    ],
)
def test_bad_configuration_stops_start_up_with_one_line(env: dict[str, str], variable: str) -> None:
    """Each refusal exits with status 2 and a single stderr line naming the variable."""
    result = run_main(env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("otpserver: configuration error: ")
    assert variable in lines[0]


def test_master_key_accepts_padded_and_unpadded_base64url() -> None:
    """Padding is optional, and 32 bytes are required."""
    assert parse_master_key(MASTER_KEY_TEXT) == parse_master_key(MASTER_KEY_TEXT + "=")
    with pytest.raises(ConfigError, match="OTP_MASTER_KEY"):
        parse_master_key("AAAA")
    with pytest.raises(ConfigError, match="OTP_MASTER_KEY"):
        parse_master_key("not base64 at all!")


def test_policy_overrides_come_from_the_environment() -> None:
    """Each policy variable overrides its field."""
    settings = Settings.from_env(
        {
            "OTP_LENGTH": "8",
            "OTP_TTL_SECONDS": "120",
            "OTP_MAX_ATTEMPTS": "5",
            "OTP_RESEND_COOLDOWN_SECONDS": "10",
            "OTP_MAX_RESENDS": "1",
            "OTP_MAX_CREDENTIALS": "2",
        }
    )
    assert settings.policy_overrides == {
        "length": 8,
        "ttl_seconds": 120,
        "max_attempts": 5,
        "resend_cooldown_seconds": 10,
        "max_resends": 1,
        "max_credentials": 2,
    }


def test_defaults_are_production_on_memory() -> None:
    """With no variables set, the server is in production mode on the memory store."""
    settings = Settings.from_env({})
    assert settings.env == "production"
    assert settings.store_url == "memory://"
    assert settings.port == 8000
    assert settings.max_body_bytes == 4096
