"""Development mode stays on this machine: only loopback Host names, and a warning when bound wider.

DNS rebinding: a page on `evil.example` whose name later resolves to 127.0.0.1 can make
same-origin requests to a server on the developer's machine, and development serves codes
in clear at `/dev/outbox`. The browser still sends `Host: evil.example`, so refusing every
Host but the loopback names closes it. Production serves whatever names the proxy in front
routes to it, so the check is for development only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from otpserver.errors import HostNotAllowed
from otpserver.settings.environment import Settings

LOOPBACK_HOSTS = frozenset({b"localhost", b"127.0.0.1", b"[::1]"})
"""Host header names (port stripped, lower-cased) development answers."""


def host_name(value: bytes) -> bytes:
    """A Host header's name without its port (`localhost:8000` → `localhost`)."""
    value = value.strip().lower()
    if value.startswith(b"["):
        return value.partition(b"]")[0] + b"]"
    return value.partition(b":")[0]


def check_loopback_host(headers: Iterable[tuple[bytes, bytes]]) -> None:
    """Raise 400 `HOST:NOT_ALLOWED` unless the request names exactly one loopback Host (an
    edge rule: `EdgeMiddleware` applies it before any route or added middleware runs)."""
    hosts = [value for name, value in headers if name == b"host"]
    if len(hosts) != 1 or host_name(hosts[0]) not in LOOPBACK_HOSTS:
        raise HostNotAllowed()


def exposure_warning(settings: Settings) -> str | None:
    """The start-up warning for development mode listening beyond loopback, else None."""
    if not settings.is_development:
        return None
    try:
        loopback = ipaddress.ip_address(settings.host.strip("[]")).is_loopback
    except ValueError:
        loopback = settings.host.lower() == "localhost"
    if loopback:
        return None
    return (
        f"development mode is listening on {settings.host}, beyond this machine: anyone who "
        "can reach it can read the codes it sends; set OTP_HOST=127.0.0.1"
    )
