"""Per-request context: the request id, the optional access log, refused-request counting.

A pure ASGI middleware, outermost, so every line any layer logs while serving a request
carries its id. The id comes from `X-Request-Id` only when the peer is a trusted proxy
(`OTP_TRUSTED_PROXIES`), which sets it for its own logs; anyone else could choose ids that
collide with real ones, so they get a fresh one. The response always echoes the id.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from otpserver.observability import outage
from otpserver.observability.logs import REQUEST_ID
from otpserver.settings.proxies import TrustedProxies

access_log = logging.getLogger("otpserver.access")

HEADER = b"x-request-id"
_ACCEPTED_ID = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}")
_TOKEN_SEGMENT = 24
"""Path segments this long or longer are tokens (a link's, say): the access log hides them."""


def new_request_id() -> str:
    """A fresh random id: 16 hexadecimal characters."""
    return os.urandom(8).hex()


def loggable_path(path: str) -> str:
    """The path with token-like segments replaced, so no link token reaches a log."""
    return "/".join(
        "{token}" if len(segment) >= _TOKEN_SEGMENT else segment for segment in path.split("/")
    )


class RequestContext:
    """Gives each HTTP request an id (in logs and in `X-Request-Id`), and keeps the access log."""

    def __init__(
        self, app: ASGIApp, proxies: TrustedProxies, *, access_log_enabled: bool = False
    ) -> None:
        self.app = app
        self.proxies = proxies
        self.access_log_enabled = access_log_enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self._request_id(scope)
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 0
        echoed = (HEADER, request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echoed]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if status == 503 and scope["path"] != "/health/ready":
                outage.STORE.refused()
            if self.access_log_enabled:
                access_log.info(
                    "%s %s %d %.1fms",
                    scope["method"],
                    loggable_path(scope["path"]),
                    status or 500,
                    (time.perf_counter() - started) * 1000,
                )
            REQUEST_ID.reset(token)

    def _request_id(self, scope: Scope) -> str:
        if self.proxies.networks or self.proxies.unix_socket:
            offered: bytes | None = next((v for k, v in scope["headers"] if k == HEADER), None)
            if offered is not None and _ACCEPTED_ID.fullmatch(offered) and self._from_proxy(scope):
                return offered.decode()
        return new_request_id()

    def _from_proxy(self, scope: Scope) -> bool:
        client = scope.get("client")
        if client is None:
            return self.proxies.trusts(None)
        try:
            return self.proxies.trusts(ipaddress.ip_address(client[0]))
        except ValueError:
            return False
