"""Limits against abuse of the server itself: wider networks, the long failure cap, and the
HTTP server's bounds on connections, request heads and slow clients.

The limit variables override `LimitPolicy` fields like the other `OTP_LIMIT_*` ones (unset
keeps `custom/limits.py`'s value); the server variables are read into `ServerLimits`,
which `otpserver.__main__.serve` hands to uvicorn.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from otpserver.settings import overrides
from otpserver.settings.overrides import MAX_ALLOWANCE, MAX_FAILURES_CEILING
from otpserver.settings.reader import ConfigProblems, EnvReader, EnvVar, collecting, overridable

# --- Defaults, written once ----------------------------------------------------------------

LIMIT_FAILURE_CAP = MAX_FAILURES_CEILING
"""Consecutive wrong codes per credential over the long window (NIST SP 800-63B §3.2.2)."""
LIMIT_FAILURE_CAP_WINDOW_SECONDS = 30 * 86400
LIMIT_NETWORK_REQUESTS = 100
"""Creates and resends per IPv4 /24 and per IPv6 /56 and /48, per address window."""
LIMIT_NETWORK_VERIFIES = 200
LIMIT_NETWORK_BUDGET_PERCENT = 10
"""The share of a channel's hourly budget one IPv4 /24 or IPv6 /48 may spend."""
MAX_FAILURE_CAP_WINDOW_SECONDS = 366 * 86400

MAX_CONNECTIONS = 1000
"""Open connections per worker; below the usual 1024-file limit, which the server also
raises to its hard maximum at start-up where the system allows."""
REQUEST_TIMEOUT_SECONDS = 10.0
"""A request's head and body must both have arrived within this, from its first byte (or
from the connection's opening, for its first request)."""
KEEP_ALIVE_SECONDS = 5
MAX_HEADER_BYTES = 16 * 1024
MAX_URL_BYTES = 4096

# --- Limit variables (`LimitPolicy` fields) --------------------------------------------------

LIMIT_ENV_FIELDS: Mapping[str, str] = {
    "OTP_LIMIT_FAILURE_CAP": "failure_cap",
    "OTP_LIMIT_FAILURE_CAP_WINDOW_SECONDS": "failure_cap_window_seconds",
    "OTP_LIMIT_NETWORK_REQUESTS": "network_requests",
    "OTP_LIMIT_NETWORK_VERIFIES": "network_verifies",
    "OTP_LIMIT_NETWORK_BUDGET_PERCENT": "network_budget_percent",
}
LIMIT_BOUNDS: Mapping[str, tuple[int, int]] = {
    "failure_cap": (1, MAX_FAILURES_CEILING),
    "failure_cap_window_seconds": (1, MAX_FAILURE_CAP_WINDOW_SECONDS),
    "network_requests": (1, MAX_ALLOWANCE),
    "network_verifies": (1, MAX_ALLOWANCE),
    "network_budget_percent": (1, 100),
}
ALL_LIMIT_ENV_FIELDS: Mapping[str, str] = {**overrides.LIMIT_ENV_FIELDS, **LIMIT_ENV_FIELDS}
"""Every `OTP_LIMIT_*`/`OTP_SMS_*` number and the `LimitPolicy` field it overrides."""
ALL_LIMIT_BOUNDS: Mapping[str, tuple[int, int]] = {**overrides.LIMIT_BOUNDS, **LIMIT_BOUNDS}

LIMIT_ENV_VARS: tuple[EnvVar, ...] = (
    overridable(
        "OTP_LIMIT_FAILURE_CAP",
        LIMIT_FAILURE_CAP,
        f"wrong codes in a row per credential over the long window, at most "
        f"{MAX_FAILURES_CEILING}; reaching it locks until a correct code, the host, or the "
        "window's end",
    ),
    overridable(
        "OTP_LIMIT_FAILURE_CAP_WINDOW_SECONDS",
        LIMIT_FAILURE_CAP_WINDOW_SECONDS,
        "the long window of that cap, from the first wrong code",
    ),
    overridable(
        "OTP_LIMIT_NETWORK_REQUESTS",
        LIMIT_NETWORK_REQUESTS,
        "create and resend requests per IPv4 /24 and per IPv6 /56 and /48 per address window",
    ),
    overridable(
        "OTP_LIMIT_NETWORK_VERIFIES",
        LIMIT_NETWORK_VERIFIES,
        "codes checked per IPv4 /24 and per IPv6 /56 and /48 per address window",
    ),
    overridable(
        "OTP_LIMIT_NETWORK_BUDGET_PERCENT",
        LIMIT_NETWORK_BUDGET_PERCENT,
        "percent of a channel's hourly budget one IPv4 /24 or IPv6 /48 may spend",
    ),
)

# --- Server variables ------------------------------------------------------------------------

SERVER_ENV_VARS: tuple[EnvVar, ...] = (
    EnvVar(
        "OTP_MAX_CONNECTIONS",
        str(MAX_CONNECTIONS),
        "open connections per worker; past it the longest-waiting idle one is dropped",
    ),
    EnvVar(
        "OTP_REQUEST_TIMEOUT_SECONDS",
        f"{REQUEST_TIMEOUT_SECONDS:g}",
        "a request's head and body must arrive within this, or the connection is closed",
    ),
    EnvVar(
        "OTP_KEEP_ALIVE_SECONDS",
        str(KEEP_ALIVE_SECONDS),
        "how long an idle connection is kept open between requests",
    ),
    EnvVar(
        "OTP_MAX_HEADER_BYTES",
        str(MAX_HEADER_BYTES),
        "largest request head (request line and headers) accepted (431 above)",
    ),
    EnvVar("OTP_MAX_URL_BYTES", str(MAX_URL_BYTES), "longest request URL accepted (414 above)"),
)


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What one worker's HTTP server accepts before the application sees a request."""

    max_connections: int = MAX_CONNECTIONS
    request_timeout_seconds: float = REQUEST_TIMEOUT_SECONDS
    keep_alive_seconds: int = KEEP_ALIVE_SECONDS
    max_header_bytes: int = MAX_HEADER_BYTES
    max_url_bytes: int = MAX_URL_BYTES

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str], problems: ConfigProblems | None = None
    ) -> ServerLimits:
        """Read and check the server variables (every problem reported together)."""
        with collecting(problems) as found:
            env = EnvReader(environ, SERVER_ENV_VARS, found)
            limits = cls(
                max_connections=env.integer("OTP_MAX_CONNECTIONS", 16, 1_000_000),
                request_timeout_seconds=env.seconds("OTP_REQUEST_TIMEOUT_SECONDS", maximum=300),
                keep_alive_seconds=env.integer("OTP_KEEP_ALIVE_SECONDS", 1, 300),
                max_header_bytes=env.integer("OTP_MAX_HEADER_BYTES", 1024, 1 << 20),
                max_url_bytes=env.integer("OTP_MAX_URL_BYTES", 256, 1 << 20),
            )
            if limits.max_url_bytes > limits.max_header_bytes:
                env.problem(
                    "OTP_MAX_URL_BYTES", "OTP_MAX_URL_BYTES must not exceed OTP_MAX_HEADER_BYTES"
                )
            return limits
