"""Deployment settings, read once from the environment and checked at start-up.

Every variable is listed in `ENV_VARS` with its default and a one-line comment; `sample.env`
is generated from that list and a test keeps them identical; the values come from
`otpserver.settings.defaults`. Every bad value is reported at once: one `ConfigError`
with one line per problem, each naming its variable.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from otpserver.errors import ConfigError
from otpserver.settings import defaults, hardening
from otpserver.settings.api import ApiSettings
from otpserver.settings.delivery import DeliveryConfig
from otpserver.settings.factors import FactorSettings
from otpserver.settings.links import LinkSettings
from otpserver.settings.operations import OperationsConfig
from otpserver.settings.overrides import (
    MAX_ALLOWANCE,
    MAX_FAILURES_CEILING,
    MAX_TTL_SECONDS,
    POLICY_BOUNDS,
    POLICY_ENV_FIELDS,
    LimitOverrides,
    parse_destinations,
)
from otpserver.settings.proxies import PROXY_HEADERS, TrustedProxies, parse_trusted_proxies
from otpserver.settings.reader import (
    ConfigProblems,
    EnvReader,
    EnvVar,
    collecting,
    default_text,
    overridable,
)
from otpserver.settings.store import RedisOptions, parse_store_url

Environment = Literal["production", "development"]
_ENVIRONMENTS: tuple[Environment, ...] = ("production", "development")

MASTER_KEY_BYTES = 32


ENV_VARS: tuple[EnvVar, ...] = (
    EnvVar(
        "OTP_ENV",
        defaults.ENVIRONMENT,
        "production (https, __Host- cookie) or development (http://localhost)",
    ),
    EnvVar("OTP_HOST", defaults.HOST, "address to listen on (0.0.0.0 in a container)"),
    EnvVar("OTP_PORT", str(defaults.PORT), "port to listen on"),
    EnvVar(
        "OTP_WORKERS",
        str(defaults.WORKERS),
        "worker processes; more than one needs a shared store (redis://)",
    ),
    EnvVar(
        "OTP_WORKER_TIMEOUT_SECONDS",
        str(defaults.WORKER_TIMEOUT_SECONDS),
        "with several workers: one whose event loop is silent this long is killed and replaced",
    ),
    EnvVar(
        "OTP_STORE_URL",
        defaults.STORE_URL,
        "memory:// (one process), redis://host:6379/0, rediss://, unix://, "
        "redis+sentinel://h1:26379,h2:26379/service or redis+cluster://h1:6379,h2:6379",
    ),
    EnvVar(
        "OTP_STORE_TIMEOUT_SECONDS",
        str(defaults.STORE_TIMEOUT_SECONDS),
        "give up on the store after this long and answer 503",
    ),
    EnvVar(
        "OTP_MASTER_KEY",
        "",
        "base64url of 32 random bytes; wraps the KEKs at rest; required in production",
    ),
    EnvVar(
        "OTP_KEK_ROTATION_SECONDS",
        str(defaults.KEK_ROTATION_SECONDS),
        "how often a new key-encryption key starts wrapping cookies",
    ),
    EnvVar(
        "OTP_MEMORY_MAX_IDS",
        str(defaults.MEMORY_MAX_IDS),
        "memory store: most live cookie IDs held before refusing (503)",
    ),
    EnvVar(
        "OTP_CORS_ORIGINS",
        "",
        "comma list of browser origins allowed to call the API with credentials",
    ),
    EnvVar(
        "OTP_MAX_BODY_BYTES",
        str(defaults.MAX_BODY_BYTES),
        "largest request body accepted (413 above)",
    ),
    overridable("OTP_LENGTH", defaults.CODE_LENGTH, "code length, 4 to 16"),
    overridable(
        "OTP_TTL_SECONDS", defaults.CODE_TTL_SECONDS, f"code lifetime, at most {MAX_TTL_SECONDS}"
    ),
    overridable("OTP_MAX_ATTEMPTS", defaults.MAX_ATTEMPTS, "wrong codes allowed per code"),
    overridable(
        "OTP_RESEND_COOLDOWN_SECONDS",
        defaults.RESEND_COOLDOWN_SECONDS,
        "wait between sends of one credential",
    ),
    overridable("OTP_MAX_RESENDS", defaults.MAX_RESENDS, "resends allowed per pending credential"),
    overridable(
        "OTP_MAX_CREDENTIALS", defaults.MAX_CREDENTIALS, "pending credentials per browser cookie"
    ),
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
        defaults.PROXY_HEADER,
        "the header those proxies set: x-forwarded-for or forwarded (RFC 7239)",
    ),
    overridable(
        "OTP_LIMIT_MAX_FAILURES",
        defaults.LIMIT_MAX_FAILURES,
        f"wrong codes in a row that lock a credential, at most {MAX_FAILURES_CEILING}",
    ),
    overridable(
        "OTP_LIMIT_FAILURE_WINDOW_SECONDS",
        defaults.LIMIT_FAILURE_WINDOW_SECONDS,
        "how long wrong codes count toward the lock without a success",
    ),
    overridable(
        "OTP_LIMIT_LOCKOUT_SECONDS",
        defaults.LIMIT_LOCKOUT_SECONDS,
        "how long a locked credential stays locked",
    ),
    overridable(
        "OTP_LIMIT_CREDENTIAL_SENDS",
        defaults.LIMIT_CREDENTIAL_SENDS,
        "codes sent to one credential per window, across browsers and clients",
    ),
    overridable(
        "OTP_LIMIT_CREDENTIAL_WINDOW_SECONDS",
        defaults.LIMIT_CREDENTIAL_WINDOW_SECONDS,
        "window of that send limit",
    ),
    overridable(
        "OTP_LIMIT_ADDRESS_REQUESTS",
        defaults.LIMIT_ADDRESS_REQUESTS,
        "create and resend requests per client address per window",
    ),
    overridable(
        "OTP_LIMIT_ADDRESS_VERIFIES",
        defaults.LIMIT_ADDRESS_VERIFIES,
        "codes checked per client address per window",
    ),
    overridable(
        "OTP_LIMIT_ADDRESS_WINDOW_SECONDS",
        defaults.LIMIT_ADDRESS_WINDOW_SECONDS,
        "window of the per-address limits",
    ),
    overridable(
        "OTP_LIMIT_CHANNEL_SENDS_PER_HOUR",
        defaults.LIMIT_CHANNEL_SENDS_PER_HOUR,
        "sends per hour per channel for all users together",
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
    overridable(
        "OTP_SMS_PREFIX_DIGITS",
        defaults.SMS_PREFIX_DIGITS,
        "digits after + that make a phone number's prefix",
    ),
    overridable(
        "OTP_SMS_PREFIX_SENDS",
        defaults.SMS_PREFIX_SENDS,
        "SMS codes per prefix per window before that prefix's breaker trips",
    ),
    overridable(
        "OTP_SMS_PREFIX_WINDOW_SECONDS",
        defaults.SMS_PREFIX_WINDOW_SECONDS,
        "window of the per-prefix count",
    ),
    overridable(
        "OTP_SMS_PREFIX_BREAKER_SECONDS",
        defaults.SMS_PREFIX_BREAKER_SECONDS,
        "how long a tripped prefix gets no SMS",
    ),
    EnvVar(
        "OTP_MEMORY_MAX_COUNTERS",
        str(defaults.MEMORY_MAX_COUNTERS),
        "memory store: most live limit counters held before refusing (503)",
    ),
)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the deployment decides; product policy lives in `custom/otp.py`."""

    env: Environment = defaults.ENVIRONMENT
    host: str = defaults.HOST
    port: int = defaults.PORT
    workers: int = defaults.WORKERS
    worker_timeout_seconds: float = defaults.WORKER_TIMEOUT_SECONDS
    store_url: str = defaults.STORE_URL
    store_timeout_seconds: float = defaults.STORE_TIMEOUT_SECONDS
    master_key: bytes | None = None
    kek_rotation_seconds: int = defaults.KEK_ROTATION_SECONDS
    memory_max_ids: int = defaults.MEMORY_MAX_IDS
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = defaults.MAX_BODY_BYTES
    policy_overrides: Mapping[str, int] = field(default_factory=dict)
    trusted_proxies: TrustedProxies = field(default_factory=TrustedProxies)
    memory_max_counters: int = defaults.MEMORY_MAX_COUNTERS
    limit_overrides: LimitOverrides = field(default_factory=LimitOverrides)
    delivery: DeliveryConfig = field(default_factory=lambda: DeliveryConfig.from_env({}))
    test_credentials: Mapping[str, str] = field(default_factory=dict)
    factors: FactorSettings = field(default_factory=FactorSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    links: LinkSettings = field(default_factory=LinkSettings)
    operations: OperationsConfig = field(default_factory=OperationsConfig)
    server: hardening.ServerLimits = field(default_factory=hardening.ServerLimits)
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
        """Read and check every variable; raise one `ConfigError` listing every bad one."""
        env = os.environ if environ is None else environ
        problems = ConfigProblems()
        reader = EnvReader(env, ENV_VARS, problems)
        environment = reader.choice("OTP_ENV", _ENVIRONMENTS)
        store_url = reader.required("OTP_STORE_URL")
        problems.read(lambda: parse_store_url(store_url), None, "OTP_STORE_URL")
        overrides = {
            name: reader.integer(var, *POLICY_BOUNDS[name])
            for var, name in POLICY_ENV_FIELDS.items()
            if reader.is_set(var)
        }
        settings = cls(
            env=environment,
            host=reader.required("OTP_HOST"),
            port=reader.integer("OTP_PORT", 0, 65535),
            workers=reader.integer("OTP_WORKERS", 1, 64),
            worker_timeout_seconds=reader.seconds("OTP_WORKER_TIMEOUT_SECONDS", maximum=3600),
            store_url=store_url,
            store_timeout_seconds=reader.seconds("OTP_STORE_TIMEOUT_SECONDS", maximum=60),
            master_key=problems.read(lambda: parse_master_key(reader.raw("OTP_MASTER_KEY")), None),
            kek_rotation_seconds=reader.integer("OTP_KEK_ROTATION_SECONDS", 60, 366 * 86400),
            memory_max_ids=reader.integer("OTP_MEMORY_MAX_IDS", 1, 10**9),
            cors_origins=problems.read(lambda: parse_origins(reader.raw("OTP_CORS_ORIGINS")), ()),
            max_body_bytes=reader.integer("OTP_MAX_BODY_BYTES", 64, 1 << 20),
            policy_overrides=overrides,
            trusted_proxies=problems.read(lambda: parse_proxy_settings(env), TrustedProxies()),
            memory_max_counters=reader.integer("OTP_MEMORY_MAX_COUNTERS", 1, 10**9),
            limit_overrides=parse_limit_overrides(env, problems),
            delivery=DeliveryConfig.from_env(env, problems),
            test_credentials=problems.read(
                lambda: parse_test_credentials(reader.raw("OTP_TEST_CREDENTIALS")), {}
            ),
            factors=problems.read(lambda: FactorSettings.from_env(env), FactorSettings()),
            operations=OperationsConfig.from_env(env, problems),
            api=ApiSettings.from_env(env, problems),
            links=LinkSettings.from_env(env, problems),
            server=hardening.ServerLimits.from_env(env, problems),
            redis=problems.read(lambda: RedisOptions.from_env(env), RedisOptions()),
        )
        problems.raise_if_any()
        return settings


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
    header = env.get("OTP_PROXY_HEADER", "").strip().lower() or defaults.PROXY_HEADER
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


def parse_limit_overrides(
    env: Mapping[str, str], problems: ConfigProblems | None = None
) -> LimitOverrides:
    """Read the `OTP_LIMIT_*` and `OTP_SMS_*` variables that are set, each within its bounds
    (`LimitPolicy.checked` checks the merged result again with the code's values)."""
    with collecting(problems) as found:
        reader = EnvReader(env, (*ENV_VARS, *hardening.LIMIT_ENV_VARS), found)
        lists: dict[str, tuple[str, ...] | None] = {}
        for name in ("OTP_SMS_ALLOWLIST", "OTP_SMS_DENYLIST"):
            raw = reader.raw(name)
            try:
                lists[name] = parse_destinations(raw) if raw else None
            except ValueError:
                lists[name] = None
                reader.problem(
                    name,
                    f"{name} must be a comma list of region codes like GB or prefixes like +4479",
                )
        return LimitOverrides(
            numbers={
                name: reader.integer(var, *hardening.ALL_LIMIT_BOUNDS[name])
                for var, name in hardening.ALL_LIMIT_ENV_FIELDS.items()
                if reader.is_set(var)
            },
            channel_sends_per_hour=found.read(
                lambda: parse_channel_budgets(reader.raw("OTP_LIMIT_CHANNEL_SENDS_PER_HOUR")), {}
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
                f"{default_text(defaults.LIMIT_CHANNEL_SENDS_PER_HOUR)}"
            )
        if not 1 <= int(number) <= MAX_ALLOWANCE:
            raise ConfigError(
                f"OTP_LIMIT_CHANNEL_SENDS_PER_HOUR budgets must be between 1 and {MAX_ALLOWANCE}"
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
