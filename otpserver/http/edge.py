"""The outermost layer: security headers, body size limit, the cross-origin policy, and
the OTP API's own routes.

It is plain ASGI, wrapped around everything else (error pages included), so that no
response can leave without the security headers and no body can be read past the limit.
The API's POST routes are served right here (see `otpserver.http.exchange` for why); every
other request goes on to Starlette.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from otpserver.errors import BodyTooLarge, OriginNotAllowed, OtpError, ServerError
from otpserver.http.exchange import (
    ApiHandler,
    ApiRequest,
    ApiResponse,
    bytes_left,
    error_response,
    read_body,
)

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
    """What the edge enforces: body limit, CORS allow-list, and whether HSTS is sent."""

    max_body_bytes: int
    cors_origins: frozenset[str]
    https_only: bool


class EdgeMiddleware:
    """Applies the rules every request and response share, before any route runs, and
    serves the API routes in `api_routes` (POST only; other methods go on to a 404)."""

    def __init__(
        self, app: ASGIApp, policy: EdgePolicy, api_routes: Mapping[str, ApiHandler]
    ) -> None:
        self.app = app
        self.api_routes = api_routes
        self.max_body_bytes = policy.max_body_bytes
        self.cors_origins = policy.cors_origins
        self.extra_headers = _SECURITY_HEADERS + ((_HSTS,) if policy.https_only else ())
        # What an API answer gets: it never sets any of these itself.
        self.api_headers = (*self.extra_headers, _API_CSP)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _header_map(scope["headers"])
        cors_origin: bytes | None = None
        handler: ApiHandler | None = None
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = self._response_headers(message.get("headers", []), cors_origin)
            await send(message)

        try:
            path = route_path(scope)
            if path.startswith(API_PREFIX):
                cors_origin = self._check_origin(scope, headers)
                method = scope["method"]
                if method == "OPTIONS":
                    await self._preflight(cors_origin, send_with_headers)
                    return
                if method == "POST":
                    handler = self.api_routes.get(path)
            declared = headers.get(b"content-length")
            if declared is not None and (
                not declared.isdigit() or int(declared) > self.max_body_bytes
            ):
                # Refused before a single body byte is read.
                await self._send_api(error_response(BodyTooLarge()), cors_origin, send)
                return
            if handler is None:
                await self.app(scope, self._limited(receive), send_with_headers)
                return
            body = await read_body(receive, self.max_body_bytes)
            if body is None:
                return  # The client left before its body arrived: nothing ran, nothing to say.
            try:
                answer = await handler(ApiRequest(scope, headers, body))
            except OtpError as error:
                answer = error_response(error)
                _forget_traceback(error)
            if isinstance(answer, ApiResponse):
                started = True
                await self._send_api(answer, cors_origin, send)
            else:
                # A hook's own Starlette response (the final hook's, after a correct code).
                await answer(scope, receive, send_with_headers)
        except OtpError as error:
            _forget_traceback(error)
            if not started:
                await self._send_api(error_response(error), cors_origin, send)
        except Exception:
            # An API handler's crash lands here directly; Starlette's own routes have already
            # answered 500 when they could. The traceback goes to the log (it holds no
            # request data: bodies and cookies are never formatted into errors).
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if not started:
                await self._send_api(error_response(ServerError()), cors_origin, send)

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
        if cors_origin is not None:
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


def route_path(scope: Scope) -> str:
    """The path below the app's mount point (`root_path`), which is what routes match."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] == "/":
        return path[len(root) :]
    return path


def _forget_traceback(error: OtpError) -> None:
    """Drop a handled refusal's traceback now.

    A refusal is an answer, not a fault, and often raised from a local variable
    (`error = ...; raise error`): the traceback holds that frame, the frame holds the
    error, and the error holds the traceback. Left alone, every wrong code or limited
    request would leave such a cycle, with the request's closures and token lists in it,
    for the cycle collector to find; cut here, reference counting frees it at once.
    """
    error.__traceback__ = None


def _cors_headers(origin: bytes) -> tuple[tuple[bytes, bytes], ...]:
    return (
        (b"access-control-allow-origin", origin),
        (b"access-control-allow-credentials", b"true"),
        (b"access-control-expose-headers", b"retry-after, ratelimit, date"),
        (b"vary", b"Origin"),
    )


def _header_map(raw: Iterable[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    # Later duplicates win; the cookie header is read separately with duplicate detection.
    return dict(raw)
