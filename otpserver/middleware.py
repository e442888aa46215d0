"""The outermost layer: security headers, body size limit, and the cross-origin policy.

It is plain ASGI, wrapped around everything else (error pages included), so that no
response can leave without the security headers and no body can be read past the limit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from otpserver.errors import BodyTooLarge, OriginNotAllowed, OtpError, ServerError

log = logging.getLogger("otpserver.middleware")

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
    """Applies the rules every request and response share, before any route runs."""

    def __init__(self, app: ASGIApp, policy: EdgePolicy) -> None:
        self.app = app
        self.max_body_bytes = policy.max_body_bytes
        self.cors_origins = policy.cors_origins
        self.extra_headers = _SECURITY_HEADERS + ((_HSTS,) if policy.https_only else ())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _header_map(scope["headers"])
        cors_origin: bytes | None = None
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = self._response_headers(message.get("headers", []), cors_origin)
            await send(message)

        try:
            if scope["path"].startswith(API_PREFIX):
                cors_origin = self._check_origin(scope, headers)
                if scope["method"] == "OPTIONS":
                    await self._preflight(cors_origin, send_with_headers)
                    return
            declared = headers.get(b"content-length")
            if declared is not None and (
                not declared.isdigit() or int(declared) > self.max_body_bytes
            ):
                # Refused before a single body byte is read.
                await _send_error(BodyTooLarge(), send_with_headers)
                return
            await self.app(scope, self._limited(receive), send_with_headers)
        except OtpError as error:
            if not started:
                await _send_error(error, send_with_headers)
        except Exception:
            # Starlette has already answered 500 when it could; the traceback goes to the log
            # (it holds no request data: bodies and cookies are never formatted into errors).
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if not started:
                await _send_error(ServerError(), send_with_headers)

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
            result.extend(
                (
                    (b"access-control-allow-origin", cors_origin),
                    (b"access-control-allow-credentials", b"true"),
                    (b"access-control-expose-headers", b"retry-after, ratelimit, date"),
                    (b"vary", b"Origin"),
                )
            )
        return result

    def _limited(self, receive: Receive) -> Receive:
        """Count body bytes as they arrive, so a chunked body cannot exceed the limit either."""
        remaining = self.max_body_bytes

        async def limited_receive() -> Message:
            nonlocal remaining
            message = await receive()
            if message["type"] == "http.request":
                remaining -= len(message.get("body", b""))
                if remaining < 0:
                    raise BodyTooLarge()
            return message

        return limited_receive


def _header_map(raw: Iterable[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    # Later duplicates win; the cookie header is read separately with duplicate detection.
    return dict(raw)


async def _send_error(error: OtpError, send: Send) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers.extend(
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items()
    )
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
