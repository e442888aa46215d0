"""HTTP requests straight into an ASGI application: no client library, no sockets.

For what a client library would get in the way of: counting the objects a request leaves
behind, a client that leaves before its body, and profiling the application alone
(`bench/profile.py`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

Message = MutableMapping[str, Any]
Asgi = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[Message]],
        Callable[[Message], Awaitable[None]],
    ],
    Awaitable[None],
]
Headers = Sequence[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Origin:
    """Where requests come from and go to, as a server would put it in the scope."""

    scheme: str = "https"
    host: str = "otp.example.com"
    port: int = 443
    client: str = "192.0.2.7"


DEFAULT_ORIGIN = Origin()


@dataclass(frozen=True, slots=True)
class Answer:
    """A response's status and headers (the body is not kept)."""

    status: int
    headers: Headers

    def cookie(self, name: bytes) -> bytes | None:
        """The value the response sets for cookie `name`, or None if it sets none."""
        prefix = name + b"="
        for header, value in self.headers:
            if header == b"set-cookie" and value.startswith(prefix):
                return value.split(b";", 1)[0][len(prefix) :]
        return None


async def post(
    app: Asgi,
    path: str,
    body: bytes | None,
    *,
    origin: Origin | None = None,
    headers: Headers = (),
) -> tuple[Answer | None, list[Message]]:
    """POST `body` as JSON to `path`; None for `body` is a client that leaves before sending
    it. The answer (None if the app sent none) and every message the app sent."""
    origin = origin or DEFAULT_ORIGIN
    host = origin.host if origin.port in (80, 443) else f"{origin.host}:{origin.port}"
    scope: MutableMapping[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": origin.scheme,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", host.encode()),
            (b"content-type", b"application/json"),
            *([] if body is None else [(b"content-length", str(len(body)).encode())]),
            *headers,
        ],
        "client": (origin.client, 40000),
        "server": (origin.host, origin.port),
        "state": {},
    }
    delivered = body is None
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    answer = None if start is None else Answer(start["status"], start.get("headers", ()))
    return answer, sent
