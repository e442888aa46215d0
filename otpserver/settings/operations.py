"""Operations settings: log format, access log, metrics listener, audit webhook, store wait."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from otpserver.errors import ConfigError
from otpserver.settings.reader import ConfigProblems, EnvReader, EnvVar, collecting

LogFormat = Literal["text", "json"]
_LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
_SWITCHES = ("true", "false")

# A format prefix, not a secret (tests/test_audit_events.py parses real secrets with it).
WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105  # nosec B105
"""Standard Webhooks secrets: this prefix, then the base64 of the signing key."""
MIN_WEBHOOK_KEY_BYTES = 24

OPERATIONS_ENV_VARS: tuple[EnvVar, ...] = (
    EnvVar("OTP_LOG_FORMAT", "text", "text (one readable line per record) or json (one object)"),
    EnvVar("OTP_LOG_LEVEL", "info", "least severe level logged: debug, info, warning or error"),
    EnvVar("OTP_ACCESS_LOG", "false", "true logs one line per request (method, path, status, ms)"),
    EnvVar(
        "OTP_STORE_WAIT_SECONDS",
        "30",
        "at start-up, how long to wait for a store that does not answer yet before giving up",
    ),
    EnvVar(
        "OTP_METRICS_PORT",
        "",
        "port of a separate listener serving Prometheus /metrics; empty: no metrics listener",
    ),
    EnvVar("OTP_METRICS_HOST", "127.0.0.1", "address the metrics listener binds to"),
    EnvVar(
        "OTP_EVENTS_WEBHOOK_URL",
        "",
        "URL that receives every audit event, signed the Standard Webhooks way; empty: log only",
    ),
    EnvVar(
        "OTP_EVENTS_WEBHOOK_SECRET",
        "",
        "whsec_ followed by base64 of 24+ random bytes; required with OTP_EVENTS_WEBHOOK_URL",
    ),
)


@dataclass(frozen=True, slots=True)
class OperationsConfig:
    """How the server reports on itself: logs, metrics, audit events, and start-up patience."""

    log_format: LogFormat = "text"
    log_level: str = "INFO"
    access_log: bool = False
    store_wait_seconds: float = 30.0
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    events_webhook_url: str | None = None
    events_webhook_key: bytes | None = None

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str], problems: ConfigProblems | None = None
    ) -> OperationsConfig:
        """Read and check the operations variables, reporting every problem found."""
        with collecting(problems) as found:
            env = EnvReader(environ, OPERATIONS_ENV_VARS, found)
            level = env.choice("OTP_LOG_LEVEL", ("debug", "info", "warning", "error"))
            port = None
            if env.is_set("OTP_METRICS_PORT"):
                port = env.integer("OTP_METRICS_PORT", 1, 65535)
            url = env.optional("OTP_EVENTS_WEBHOOK_URL")
            secret = env.optional("OTP_EVENTS_WEBHOOK_SECRET")
            key = None
            if secret is not None:
                key = found.read(lambda: parse_webhook_secret(secret), None)
            if url is not None:
                parts = urlsplit(url)
                if parts.scheme not in ("http", "https") or not parts.hostname:
                    env.problem(
                        "OTP_EVENTS_WEBHOOK_URL",
                        "OTP_EVENTS_WEBHOOK_URL must be an http:// or https:// URL",
                    )
                    url = None
                if secret is None:
                    env.problem(
                        "OTP_EVENTS_WEBHOOK_SECRET",
                        "OTP_EVENTS_WEBHOOK_SECRET is required with OTP_EVENTS_WEBHOOK_URL",
                    )
            return cls(
                log_format=env.choice("OTP_LOG_FORMAT", _LOG_FORMATS),
                log_level=level.upper(),
                access_log=env.choice("OTP_ACCESS_LOG", _SWITCHES) == "true",
                store_wait_seconds=env.seconds("OTP_STORE_WAIT_SECONDS", maximum=3600),
                metrics_port=port,
                metrics_host=env.required("OTP_METRICS_HOST"),
                events_webhook_url=url if key is not None else None,
                events_webhook_key=key if url is not None else None,
            )


def parse_webhook_secret(value: str) -> bytes:
    """The signing key of a `whsec_<base64>` secret (Standard Webhooks)."""
    message = (
        f"OTP_EVENTS_WEBHOOK_SECRET must be {WEBHOOK_SECRET_PREFIX} followed by base64 of "
        f"at least {MIN_WEBHOOK_KEY_BYTES} bytes"
    )
    if not value.startswith(WEBHOOK_SECRET_PREFIX):
        raise ConfigError(message)
    try:
        key = base64.b64decode(value[len(WEBHOOK_SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(message) from None
    if len(key) < MIN_WEBHOOK_KEY_BYTES:
        raise ConfigError(message)
    return key
