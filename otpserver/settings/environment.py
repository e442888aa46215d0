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
from otpserver.settings.delivery import DeliveryConfig
from otpserver.settings.overrides import (
    LIMIT_ENV_FIELDS,
    POLICY_ENV_FIELDS,
    LimitOverrides,
    parse_destinations,
)
from otpserver.settings.proxies import PROXY_HEADERS, TrustedProxies, parse_trusted_proxies
from otpserver.settings.reader import EnvReader, EnvVar
from otpserver.settings.store import RedisOptions

Environment = Literal["production", "development"]
_ENVIRONMENTS: tuple[Environment, ...] = ("production", "development")

MASTER_KEY_BYTES = 32


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
        "OTP_STORE_URL",
        "memory://",
        "memory:// (one process), redis://host:6379/0, rediss://, unix://, "
        "redis+sentinel://h1:26379,h2:26379/service or redis+cluster://h1:6379,h2:6379",
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
    EnvVar(
        "OTP_TEST_CREDENTIALS",
        "",
        "development only: address=code pairs with fixed codes that are never delivered",
    ),
    EnvVar(
        "OTP_TRUSTED_PROXIES",
        "",
        "comma list of proxy addresses/CIDRs (or unix) whose forwarding header is believed",
    ),
    EnvVar(
        "OTP_PROXY_HEADER",
        "x-forwarded-for",
        "the header those proxies set: x-forwarded-for or forwarded (RFC 7239)",
    ),
    EnvVar(
        "OTP_LIMIT_MAX_FAILURES",
        "",
        "wrong codes in a row that lock a credential, at most 100 (default from "
        "custom/limits.py: 10)",
    ),
    EnvVar(
        "OTP_LIMIT_FAILURE_WINDOW_SECONDS",
        "",
        "how long wrong codes count toward the lock without a success (default: 86400)",
    ),
    EnvVar(
        "OTP_LIMIT_LOCKOUT_SECONDS", "", "how long a locked credential stays locked (default: 900)"
    ),
    EnvVar(
        "OTP_LIMIT_CREDENTIAL_SENDS",
        "",
        "codes sent to one credential per window, across browsers and clients (default: 5)",
    ),
    EnvVar("OTP_LIMIT_CREDENTIAL_WINDOW_SECONDS", "", "window of that send limit (default: 600)"),
    EnvVar(
        "OTP_LIMIT_ADDRESS_REQUESTS",
        "",
        "create and resend requests per client address per window (default: 30)",
    ),
    EnvVar(
        "OTP_LIMIT_ADDRESS_VERIFIES",
        "",
        "codes checked per client address per window (default: 60)",
    ),
    EnvVar(
        "OTP_LIMIT_ADDRESS_WINDOW_SECONDS", "", "window of the per-address limits (default: 600)"
    ),
    EnvVar(
        "OTP_LIMIT_CHANNEL_SENDS_PER_HOUR",
        "",
        "sends per hour per channel for all users together (default: email=5000,phone=500,*=1000)",
    ),
    EnvVar(
        "OTP_SMS_ALLOWLIST",
        "",
        "comma list of countries (GB) or +prefixes that may get SMS codes (default: any)",
    ),
    EnvVar(
        "OTP_SMS_DENYLIST",
        "",
        "comma list of countries or +prefixes never sent SMS codes, even allowed (default: none)",
    ),
    EnvVar(
        "OTP_SMS_PREFIX_DIGITS", "", "digits after + that make a phone number's prefix (default: 6)"
    ),
    EnvVar(
        "OTP_SMS_PREFIX_SENDS",
        "",
        "SMS codes per prefix per window before that prefix's breaker trips (default: 20)",
    ),
    EnvVar("OTP_SMS_PREFIX_WINDOW_SECONDS", "", "window of the per-prefix count (default: 3600)"),
    EnvVar(
        "OTP_SMS_PREFIX_BREAKER_SECONDS",
        "",
        "how long a tripped prefix gets no SMS (default: 3600)",
    ),
    EnvVar(
        "OTP_MEMORY_MAX_COUNTERS",
        "1000000",
        "memory store: most live limit counters held before refusing (503)",
    ),
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
    trusted_proxies: TrustedProxies = field(default_factory=TrustedProxies)
    memory_max_counters: int = 1_000_000
    limit_overrides: LimitOverrides = field(default_factory=LimitOverrides)
    delivery: DeliveryConfig = field(default_factory=lambda: DeliveryConfig.from_env({}))
    test_credentials: Mapping[str, str] = field(default_factory=dict)
    redis: RedisOptions = field(default_factory=RedisOptions)

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
        reader = EnvReader(env, ENV_VARS)
        environment = reader.choice("OTP_ENV", _ENVIRONMENTS)
        store_url = reader.required("OTP_STORE_URL")
        overrides = {
            name: reader.integer(var, 0, 1_000_000)
            for var, name in POLICY_ENV_FIELDS.items()
            if reader.is_set(var)
        }
        return cls(
            env=environment,
            host=reader.required("OTP_HOST"),
            port=reader.integer("OTP_PORT", 0, 65535),
            workers=reader.integer("OTP_WORKERS", 1, 64),
            store_url=store_url,
            store_timeout_seconds=reader.seconds("OTP_STORE_TIMEOUT_SECONDS", maximum=60),
            master_key=parse_master_key(env.get("OTP_MASTER_KEY", "")),
            kek_rotation_seconds=reader.integer("OTP_KEK_ROTATION_SECONDS", 60, 366 * 86400),
            memory_max_ids=reader.integer("OTP_MEMORY_MAX_IDS", 1, 10**9),
            cors_origins=parse_origins(env.get("OTP_CORS_ORIGINS", "")),
            max_body_bytes=reader.integer("OTP_MAX_BODY_BYTES", 64, 1 << 20),
            policy_overrides=overrides,
            trusted_proxies=parse_proxy_settings(env),
            memory_max_counters=reader.integer("OTP_MEMORY_MAX_COUNTERS", 1, 10**9),
            limit_overrides=parse_limit_overrides(env),
            delivery=DeliveryConfig.from_env(env),
            test_credentials=parse_test_credentials(env.get("OTP_TEST_CREDENTIALS", "")),
            redis=RedisOptions.from_env(env),
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


def parse_proxy_settings(env: Mapping[str, str]) -> TrustedProxies:
    """Read `OTP_TRUSTED_PROXIES` and `OTP_PROXY_HEADER`."""
    header = env.get("OTP_PROXY_HEADER", "").strip().lower() or "x-forwarded-for"
    if header not in PROXY_HEADERS:
        raise ConfigError("OTP_PROXY_HEADER must be x-forwarded-for or forwarded")
    try:
        return parse_trusted_proxies(
            env.get("OTP_TRUSTED_PROXIES", ""),
            "forwarded" if header == "forwarded" else "x-forwarded-for",
        )
    except ValueError as error:
        raise ConfigError(
            f"OTP_TRUSTED_PROXIES must be a comma list of addresses, CIDRs or unix ({error})"
        ) from None


def parse_limit_overrides(env: Mapping[str, str]) -> LimitOverrides:
    """Read the `OTP_LIMIT_*` and `OTP_SMS_*` variables that are set; ranges are checked
    later, with the code's defaults, by `LimitPolicy.checked`."""
    reader = EnvReader(env, ENV_VARS)
    lists: dict[str, tuple[str, ...] | None] = {}
    for name in ("OTP_SMS_ALLOWLIST", "OTP_SMS_DENYLIST"):
        raw = env.get(name, "").strip()
        try:
            lists[name] = parse_destinations(raw) if raw else None
        except ValueError:
            raise ConfigError(
                f"{name} must be a comma list of region codes like GB or prefixes like +4479"
            ) from None
    return LimitOverrides(
        numbers={
            name: reader.integer(var, 0, 10**9)
            for var, name in LIMIT_ENV_FIELDS.items()
            if reader.is_set(var)
        },
        channel_sends_per_hour=parse_channel_budgets(
            env.get("OTP_LIMIT_CHANNEL_SENDS_PER_HOUR", "")
        ),
        sms_allowlist=lists["OTP_SMS_ALLOWLIST"],
        sms_denylist=lists["OTP_SMS_DENYLIST"],
    )


def parse_channel_budgets(value: str) -> dict[str, int]:
    """`email=5000,phone=500,*=1000` as a mapping; empty keeps `custom/limits.py`'s."""
    budgets: dict[str, int] = {}
    for raw in value.split(","):
        if not raw.strip():
            continue
        channel, sep, number = (part.strip() for part in raw.partition("="))
        if not sep or not channel or not number.isdigit() or not number.isascii():
            raise ConfigError(
                "OTP_LIMIT_CHANNEL_SENDS_PER_HOUR must be a comma list like "
                "email=5000,phone=500,*=1000"
            )
        budgets[channel] = int(number)
    return budgets


def parse_test_credentials(value: str) -> dict[str, str]:
    """`ada@example.com=123456,+14155550100=000000` as {address: code}.

    Addresses are written as the server normalizes them: lower-case email, E.164 phone.
    """
    pairs: dict[str, str] = {}
    for raw in value.split(","):
        if not raw.strip():
            continue
        address, sep, code = raw.strip().rpartition("=")
        if not sep or not address.strip() or not code.strip():
            raise ConfigError("OTP_TEST_CREDENTIALS must be a comma list of address=code pairs")
        pairs[address.strip().lower()] = code.strip()
    return pairs


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
