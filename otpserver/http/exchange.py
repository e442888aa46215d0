"""The OTP API's own request and response: plain data, no framework objects in between.

The three routes each read one small body and answer one small JSON document. Starlette's
`Request` and `Response` (header multidicts, a body stream, background tasks, a second
pass over the headers to add the security ones) cost more CPU than the OTP work itself,
so the edge middleware serves these routes directly: it reads the body into an
`ApiRequest`, calls the handler, and writes the `ApiResponse` in two ASGI messages. Hooks
that expect Starlette types still get them (`ApiRequest.starlette`), built only when one
is actually called.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_json
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope

from otpserver.errors import BodyTooLarge, OtpError

JSON_CONTENT_TYPE = (b"content-type", b"application/json")


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
