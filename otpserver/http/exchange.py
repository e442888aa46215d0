"""The OTP API's own request and response: plain data, no framework objects in between.

The API routes each read one small body and answer one small JSON document. Starlette's
`Request` and `Response` (header multidicts, a body stream, background tasks, a second
pass over the headers to add the security ones) cost more CPU than the OTP work itself,
so each API route is an `ApiEndpoint`: a plain ASGI app that Starlette's router calls like
any other route (so middleware added with `app.add_middleware` sees it), which reads the
body into an `ApiRequest`, calls the handler, and writes the `ApiResponse` in two ASGI
messages. Hooks that expect Starlette types still get them (`ApiRequest.starlette`), built
only when one is actually called.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_json
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from otpserver.errors import BodyTooLarge, OtpError, ServerError

log = logging.getLogger("otpserver.http")

JSON_CONTENT_TYPE = (b"content-type", b"application/json")
API_HEADERS_SCOPE_KEY = "otpserver.api_headers"
"""Where the edge leaves the headers every API answer carries (security headers, CORS), so an
`ApiEndpoint` writes them with its own, and marks its start message with the same key so the
edge does not pass over its headers a second time."""


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """One API call: the ASGI scope, its headers by name, and the whole body."""

    scope: Scope
    headers: Mapping[bytes, bytes]
    """Lower-case names; when a name repeats, the last value (cookies are read from the
    scope instead, where a repeated cookie is refused)."""
    body: bytes

    def header(self, name: bytes) -> str | None:
        """A header's value as text, None when absent."""
        value = self.headers.get(name)
        return None if value is None else value.decode("latin-1")

    def media_type(self) -> bytes:
        """The content type without parameters, lower-cased (empty when absent)."""
        return self.headers.get(b"content-type", b"").partition(b";")[0].strip().lower()

    def starlette(self) -> Request:
        """The same request as a Starlette `Request`, for hooks written against Starlette;
        its body reads back what was already received."""
        body = self.body

        async def replay() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        return Request(self.scope, replay)


@dataclass(slots=True)
class ApiResponse:
    """A complete answer: status, raw headers (content type and length included) and body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def add_header(self, name: str, value: str) -> None:
        """Append a header (names are sent lower-case, as HTTP/2 requires anyway)."""
        self.headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))

    def starlette(self) -> Response:
        """The same answer as a Starlette `Response`, for routes Starlette serves."""
        response = Response(self.body, status_code=self.status)
        response.raw_headers = list(self.headers)
        return response


ApiHandler = Callable[[ApiRequest], Awaitable["ApiResponse | Response"]]
"""An API route: `ApiResponse` normally; a Starlette `Response` where a hook made one."""


def json_response(
    content: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> ApiResponse:
    """`content` as a compact UTF-8 JSON document (what Starlette's `JSONResponse` writes,
    byte for byte, at a fifth of the cost: pydantic-core's encoder)."""
    body = to_json(content)
    response = ApiResponse(
        status, [JSON_CONTENT_TYPE, (b"content-length", str(len(body)).encode())], body
    )
    if headers:
        for name, value in headers.items():
            response.add_header(name, value)
    return response


def error_response(error: OtpError) -> ApiResponse:
    """The one way every client-visible error becomes a response."""
    return json_response(error.body(), error.status, error.headers)


def bytes_left(chunk: bytes, remaining: int) -> int:
    """What remains of a body's byte allowance after `chunk`; `BodyTooLarge` once it is
    overdrawn. The one body-size rule, for the API routes' `read_body` and the receive the
    edge hands every other route (`EdgeMiddleware._limited`) alike."""
    remaining -= len(chunk)
    if remaining < 0:
        raise BodyTooLarge()
    return remaining


async def read_body(receive: Receive, max_bytes: int) -> bytes | None:
    """The whole request body, or None when the client went away before sending it.

    Bytes are counted as they arrive, so a chunked body (no `Content-Length` to refuse up
    front) raises `BodyTooLarge` as soon as it passes `max_bytes`.
    """
    chunks: list[bytes] = []
    remaining = max_bytes
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        remaining = bytes_left(chunk, remaining)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class ApiEndpoint:
    """One API route as a plain ASGI app: read the body, call the handler, send the answer.

    A refusal (`OtpError`) becomes its error response here; any other exception is logged
    and answered 500 `SERVER` (its traceback holds no request data: bodies and cookies are
    never formatted into errors). Bodies are read under `max_body_bytes`, chunked ones
    included.
    """

    def __init__(self, handler: ApiHandler, max_body_bytes: int) -> None:
        self.handler = handler
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await read_body(receive, self.max_body_bytes)
            if body is None:
                return  # The client left before its body arrived: nothing ran, nothing to say.
            answer = await self.handler(ApiRequest(scope, header_map(scope["headers"]), body))
        except OtpError as error:
            answer = error_response(error)
            forget_traceback(error)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            answer = error_response(ServerError())
        if isinstance(answer, ApiResponse):
            headers = answer.headers
            headers.extend(scope.get(API_HEADERS_SCOPE_KEY, ()))
            await send(
                {
                    "type": "http.response.start",
                    "status": answer.status,
                    "headers": headers,
                    API_HEADERS_SCOPE_KEY: True,
                }
            )
            await send({"type": "http.response.body", "body": answer.body})
        else:
            # A hook's own Starlette response (the final hook's, after a correct code): the
            # edge adds its headers to it on the way out, as for any other route.
            await answer(scope, receive, send)


def forget_traceback(error: OtpError) -> None:
    """Drop a handled refusal's traceback now.

    A refusal is an answer, not a fault, and often raised from a local variable
    (`error = ...; raise error`): the traceback holds that frame, the frame holds the
    error, and the error holds the traceback. Left alone, every wrong code or limited
    request would leave such a cycle, with the request's closures and token lists in it,
    for the cycle collector to find; cut here, reference counting frees it at once. The
    exception it replaced (`__context__`, e.g. a `HandBack` that holds this very error) is
    let go for the same reason.
    """
    error.__traceback__ = None
    error.__context__ = None


def header_map(raw: Iterable[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """Headers by lower-case name; when a name repeats, the last value wins (the cookie
    header is read separately, where a repeated cookie is refused)."""
    return dict(raw)
