"""The outermost layer: security headers, body size limit and the cross-origin policy.

It is plain ASGI, wrapped around everything else (error pages and any middleware a fork
adds included), so that no response can leave without the security headers and no body can
be read past the limit. Routing is Starlette's: the API routes are ordinary routes
(`otpserver.http.exchange.ApiEndpoint`), so middleware added with `app.add_middleware`
sees every request.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from otpserver.errors import BodyInvalid, BodyTooLarge, OriginNotAllowed, OtpError
from otpserver.http.exchange import (
    API_HEADERS_SCOPE_KEY,
    ApiResponse,
    bytes_left,
    error_response,
    forget_traceback,
    header_map,
)
from otpserver.http.hosts import check_loopback_host

log = logging.getLogger("otpserver.http.edge")

API_PREFIX = "/api/"

_SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
_API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
_HSTS = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")
_PREFLIGHT_MAX_AGE = b"600"


@dataclass(frozen=True, slots=True)
class EdgePolicy:
    """What the edge enforces: body limit, CORS allow-list, whether HSTS is sent, and
    whether only loopback Host names are answered (development: see `hosts`)."""

    max_body_bytes: int
    cors_origins: frozenset[str]
    https_only: bool
    loopback_only: bool = False


class EdgeMiddleware:
    """Applies the rules every request and response share, before any route runs.

    `direct` maps API paths to their `ApiEndpoint`s when no middleware was added to the
    application: a POST to one of them is then handed straight to it, skipping the layers
    in between (Starlette's error middleware, its exception middleware and router), which
    add nothing to an endpoint that answers its own errors but cost a fifth of a create's
    CPU. `app.add_middleware` empties the table (`OtpApp.build_middleware_stack`), so added
    middleware always sees every route.
    """

    def __init__(
        self,
        app: ASGIApp,
        policy: EdgePolicy,
        *,
        direct: Mapping[str, ASGIApp] | None = None,
        application: object = None,
    ) -> None:
        self.app = app
        self.loopback_only = policy.loopback_only
        self.direct = direct or {}
        self.application = application
        self.max_body_bytes = policy.max_body_bytes
        self.cors_origins = policy.cors_origins
        self.extra_headers = _SECURITY_HEADERS + ((_HSTS,) if policy.https_only else ())
        # What an API answer gets: it never sets any of these itself.
        self.api_headers = (*self.extra_headers, _API_CSP)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = header_map(scope["headers"])
        cors_origin: bytes | None = None
        path = route_path(scope)
        try:
            if self.loopback_only:
                check_loopback_host(scope["headers"])
            if path.startswith(API_PREFIX):
                cors_origin = self._check_origin(scope, headers)
                if scope["method"] == "OPTIONS":
                    await self._preflight(cors_origin, self._with_headers(send, cors_origin))
                    return
            declared = headers.get(b"content-length")
            if declared is not None and declared_length(declared) > self.max_body_bytes:
                # Refused before a single body byte is read.
                await self._send_api(error_response(BodyTooLarge()), cors_origin, send)
                return
        except OtpError as error:
            forget_traceback(error)
            await self._send_api(error_response(error), cors_origin, send)
            return
        # The API's own answers come with every edge header already in place (they are
        # built here, by `api_headers`), so only other responses need the extra pass.
        scope[API_HEADERS_SCOPE_KEY] = (
            self.api_headers
            if cors_origin is None
            else (*self.api_headers, *_cors_headers(cors_origin))
        )
        endpoint = self.direct.get(path) if scope["method"] == "POST" else None
        if endpoint is not None:
            # What Starlette's application sets before routing, for hooks that read
            # `request.app` (the endpoint counts its body bytes itself).
            scope["app"] = self.application
            await endpoint(scope, receive, self._with_headers(send, cors_origin))
            return
        await self.app(scope, self._limited(receive), self._with_headers(send, cors_origin))

    def _with_headers(self, send: Send, cors_origin: bytes | None) -> Send:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and not message.get(API_HEADERS_SCOPE_KEY):
                message["headers"] = self._response_headers(message.get("headers", []), cors_origin)
            await send(message)

        return send_with_headers

    async def _send_api(self, answer: ApiResponse, cors_origin: bytes | None, send: Send) -> None:
        """Send an answer built here, with every edge header added in one pass."""
        headers = answer.headers
        headers.extend(self.api_headers)
        if cors_origin is not None:
            headers.extend(_cors_headers(cors_origin))
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})

    def _check_origin(self, scope: Scope, headers: dict[bytes, bytes]) -> bytes | None:
        """Refuse cross-site requests; return the origin to echo for allowed CORS callers."""
        if headers.get(b"sec-fetch-site") == b"cross-site":
            raise OriginNotAllowed()
        origin = headers.get(b"origin")
        if origin is None:
            return None
        text = origin.decode("latin-1").lower()
        if text in self.cors_origins:
            return origin
        # Same-origin calls carry Origin too; they are fine when it names this very host.
        host = headers.get(b"host", b"").decode("latin-1").lower()
        if host and text.partition("://")[2] == host:
            return None
        raise OriginNotAllowed()

    async def _preflight(self, cors_origin: bytes | None, send: Send) -> None:
        if cors_origin is None:
            raise OriginNotAllowed()
        await send(
            {
                "type": "http.response.start",
                "status": 204,
                "headers": [
                    (b"access-control-allow-methods", b"POST"),
                    (b"access-control-allow-headers", b"content-type"),
                    (b"access-control-max-age", _PREFLIGHT_MAX_AGE),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    def _response_headers(
        self, headers: Iterable[tuple[bytes, bytes]], cors_origin: bytes | None
    ) -> list[tuple[bytes, bytes]]:
        result = list(headers)
        present = {name.lower() for name, _ in result}
        result.extend(h for h in self.extra_headers if h[0] not in present)
        if b"content-security-policy" not in present:
            result.append(_API_CSP)
        if cors_origin is not None and b"access-control-allow-origin" not in present:
            result.extend(_cors_headers(cors_origin))
        return result

    def _limited(self, receive: Receive) -> Receive:
        """Count body bytes as they arrive, so a chunked body cannot exceed the limit either
        (the API routes read theirs with `read_body`, under the same rule)."""
        remaining = self.max_body_bytes

        async def limited_receive() -> Message:
            nonlocal remaining
            message = await receive()
            if message["type"] == "http.request":
                remaining = bytes_left(message.get("body", b""), remaining)
            return message

        return limited_receive


MAX_LENGTH_DIGITS = 15
"""No body is a petabyte: a longer Content-Length is not a length but an attack on `int()`,
which refuses to parse thousands of digits (a 500 if nothing catches it)."""


def declared_length(value: bytes) -> int:
    """A `Content-Length` value as bytes to expect; `BodyInvalid` (400) unless it is 1 to
    `MAX_LENGTH_DIGITS` ASCII digits (no sign, no spaces, no other numerals)."""
    if not 0 < len(value) <= MAX_LENGTH_DIGITS or not value.isdigit():
        raise BodyInvalid("The Content-Length header is malformed.")
    return int(value)


def route_path(scope: Scope) -> str:
    """The path below the app's mount point (`root_path`), which is what routes match."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] == "/":
        return path[len(root) :]
    return path


def _cors_headers(origin: bytes) -> tuple[tuple[bytes, bytes], ...]:
    return (
        (b"access-control-allow-origin", origin),
        (b"access-control-allow-credentials", b"true"),
        (b"access-control-expose-headers", b"retry-after, ratelimit, date"),
        (b"vary", b"Origin"),
    )
