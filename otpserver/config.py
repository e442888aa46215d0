"""Deployment settings, read once from the environment and checked at start-up.

Every variable is listed in `ENV_VARS` with its default and a one-line comment; `sample.env`
is generated from that list and a test keeps them identical. A bad value raises
`ConfigError` with one line naming the variable.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from otpserver.errors import ConfigError
from otpserver.policy import POLICY_ENV_FIELDS

Environment = Literal["production", "development"]

MASTER_KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class EnvVar:
    """One documented environment variable."""

    name: str
    default: str
    comment: str


ENV_VARS: tuple[EnvVar, ...] = (
    EnvVar(
        "OTP_ENV",
        "production",
        "production (https, __Host- cookie) or development (http://localhost)",
    ),
    EnvVar("OTP_HOST", "127.0.0.1", "address to listen on (0.0.0.0 in a container)"),
    EnvVar("OTP_PORT", "8000", "port to listen on"),
    EnvVar("OTP_WORKERS", "1", "worker processes; more than one needs a shared store (redis://)"),
    EnvVar(
        "OTP_STORE_URL", "memory://", "memory:// (one process) or redis://host:6379/0, rediss://..."
    ),
    EnvVar(
        "OTP_STORE_TIMEOUT_SECONDS", "1.0", "give up on the store after this long and answer 503"
    ),
    EnvVar(
        "OTP_MASTER_KEY",
        "",
        "base64url of 32 random bytes; wraps the KEKs at rest; required in production",
    ),
    EnvVar(
        "OTP_KEK_ROTATION_SECONDS",
        "86400",
        "how often a new key-encryption key starts wrapping cookies",
    ),
    EnvVar(
        "OTP_MEMORY_MAX_IDS",
        "2000000",
        "memory store: most live cookie IDs held before refusing (503)",
    ),
    EnvVar(
        "OTP_CORS_ORIGINS",
        "",
        "comma list of browser origins allowed to call the API with credentials",
    ),
    EnvVar("OTP_MAX_BODY_BYTES", "4096", "largest request body accepted (413 above)"),
    EnvVar("OTP_LENGTH", "", "code length (default from custom/otp.py: 6)"),
    EnvVar("OTP_TTL_SECONDS", "", "code lifetime, at most 600 (default from custom/otp.py: 300)"),
    EnvVar("OTP_MAX_ATTEMPTS", "", "wrong codes allowed per code (default from custom/otp.py: 3)"),
    EnvVar("OTP_RESEND_COOLDOWN_SECONDS", "", "wait between sends of one credential (default: 30)"),
    EnvVar("OTP_MAX_RESENDS", "", "resends allowed per pending credential (default: 3)"),
    EnvVar("OTP_MAX_CREDENTIALS", "", "pending credentials per browser cookie (default: 3)"),
)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the deployment decides; product policy lives in `custom/otp.py`."""

    env: Environment = "production"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    store_url: str = "memory://"
    store_timeout_seconds: float = 1.0
    master_key: bytes | None = None
    kek_rotation_seconds: int = 86400
    memory_max_ids: int = 2_000_000
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 4096
    policy_overrides: Mapping[str, int] = field(default_factory=dict)

    @property
    def is_development(self) -> bool:
        """True when serving plain http on localhost for development."""
        return self.env == "development"

    @property
    def uses_memory_store(self) -> bool:
        """True when IDs and keys live in this process only."""
        return self.store_url.startswith("memory://")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and check every variable; raise `ConfigError` naming the first bad one."""
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        environment = reader.text("OTP_ENV", "production")
        if environment not in ("production", "development"):
            raise ConfigError("OTP_ENV must be 'production' or 'development'")
        store_url = reader.text("OTP_STORE_URL", "memory://")
        if not store_url.startswith(("memory://", "redis://", "rediss://", "unix://")):
            raise ConfigError(
                "OTP_STORE_URL must start with memory://, redis://, rediss:// or unix://"
            )
        overrides = {
            name: reader.integer(var, 0, 1_000_000)
            for var, name in POLICY_ENV_FIELDS.items()
            if env.get(var, "").strip()
        }
        return cls(
            env="development" if environment == "development" else "production",
            host=reader.text("OTP_HOST", "127.0.0.1"),
            port=reader.integer("OTP_PORT", 0, 65535, default=8000),
            workers=reader.integer("OTP_WORKERS", 1, 64, default=1),
            store_url=store_url,
            store_timeout_seconds=reader.number("OTP_STORE_TIMEOUT_SECONDS", 0.01, 60, default=1.0),
            master_key=parse_master_key(env.get("OTP_MASTER_KEY", "")),
            kek_rotation_seconds=reader.integer(
                "OTP_KEK_ROTATION_SECONDS", 60, 366 * 86400, default=86400
            ),
            memory_max_ids=reader.integer("OTP_MEMORY_MAX_IDS", 1, 10**9, default=2_000_000),
            cors_origins=parse_origins(env.get("OTP_CORS_ORIGINS", "")),
            max_body_bytes=reader.integer("OTP_MAX_BODY_BYTES", 64, 1 << 20, default=4096),
            policy_overrides=overrides,
        )


def parse_master_key(value: str) -> bytes | None:
    """Decode `OTP_MASTER_KEY` (base64url, padding optional) or return None when unset."""
    text = value.strip()
    if not text:
        return None
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ConfigError("OTP_MASTER_KEY must be base64url of 32 bytes") from None
    if len(key) != MASTER_KEY_BYTES:
        raise ConfigError("OTP_MASTER_KEY must be base64url of 32 bytes")
    return key


def parse_origins(value: str) -> tuple[str, ...]:
    """Split `OTP_CORS_ORIGINS` into exact origins (scheme://host[:port], no path)."""
    origins = []
    for raw in value.split(","):
        origin = raw.strip().rstrip("/")
        if not origin:
            continue
        scheme, sep, rest = origin.partition("://")
        if scheme not in ("http", "https") or not sep or not rest or "/" in rest or "*" in rest:
            raise ConfigError(
                "OTP_CORS_ORIGINS must be a comma list of origins like https://app.example.com"
            )
        origins.append(origin.lower())
    return tuple(origins)


class _Reader:
    """Typed access to an environment mapping with one-line errors."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def text(self, name: str, default: str) -> str:
        return self._env.get(name, "").strip() or default

    def integer(self, name: str, low: int, high: int, default: int | None = None) -> int:
        raw = self._env.get(name, "").strip()
        if not raw and default is not None:
            return default
        try:
            value = int(raw, 10)
        except ValueError:
            raise ConfigError(f"{name} must be an integer between {low} and {high}") from None
        if not low <= value <= high:
            raise ConfigError(f"{name} must be an integer between {low} and {high}")
        return value

    def number(self, name: str, low: float, high: float, default: float) -> float:
        raw = self._env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number between {low} and {high}") from None
        if not low <= value <= high:
            raise ConfigError(f"{name} must be a number between {low} and {high}")
        return value
