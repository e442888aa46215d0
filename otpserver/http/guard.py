"""uvicorn's httptools protocol with the bounds a server facing the internet needs.

uvicorn alone waits forever for a request that never finishes arriving (no timeout before
the first response, so a connection that sends nothing, or half a header a byte at a time,
stays open), buffers a request head of any size (a 64 MiB header stalled the event loop
and doubled the worker's memory), and accepts connections until the process runs out of
file descriptors (then `/health` stops answering too). Per connection, this protocol adds:

* a deadline for each request: its head and body must have arrived within
  `OTP_REQUEST_TIMEOUT_SECONDS` of its first byte (of the connection's opening, for the
  first request); past it the connection is closed;
* bounds on the request head: a URL longer than `OTP_MAX_URL_BYTES` gets 414, a head
  larger than `OTP_MAX_HEADER_BYTES` gets 431, both before more than one read past the
  bound is buffered;
* a cap of `OTP_MAX_CONNECTIONS` open connections per worker: at the cap, a new connection
  takes the place of the open one that has waited longest without a request in progress
  (an idle or half-sent one), so held sockets cannot lock real clients out; when every
  open connection is serving a request, the new one is closed at once.

`otpserver.__main__.serve` selects it (`http=PROTOCOL`); the settings come from
`ServerLimits`, read from the environment each worker inherits.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from otpserver.settings.hardening import ServerLimits

PROTOCOL = "otpserver.http.guard:GuardedHttpToolsProtocol"
"""The import string uvicorn loads in every worker."""

_STATUS_LINES = {
    414: b"HTTP/1.1 414 URI Too Long\r\n",
    431: b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
}


class _HeadTooLarge(Exception):
    """Raised inside a parser callback to stop parsing; `_refusal` holds the status."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` with a request deadline, request-head bounds and a connection cap."""

    limits: ClassVar[ServerLimits | None] = None
    """Set by `serve`; otherwise read from the environment the first time it is needed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        bounds = type(self).bounds()
        self._request_timeout = bounds.request_timeout_seconds
        self._max_header_bytes = bounds.max_header_bytes
        self._max_url_bytes = bounds.max_url_bytes
        self._max_connections = bounds.max_connections
        self._deadline: asyncio.TimerHandle | None = None
        self._in_head = True
        # Two counts of the head so far, each never above its true size: the bytes read
        # while it was incomplete (all of them head), and the headers parsed whole.
        self._raw_head_bytes = 0
        self._header_bytes = 0
        self._refusal = 0
        self._idle_since = time.monotonic()

    @classmethod
    def bounds(cls) -> ServerLimits:
        """This worker's limits (read once)."""
        if cls.limits is None:
            cls.limits = ServerLimits.from_env(os.environ)
        return cls.limits

    # --- connection cap -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self._max_connections and not self._make_room():
            # Every open connection is serving a request: this one is refused. (The transport
            # is kept so that uvicorn's `connection_lost` has one to close.)
            self.transport = transport
            transport.abort()
            return
        super().connection_made(transport)
        self._arm_deadline()

    def _make_room(self) -> bool:
        """Close the open connection that has waited longest with no request in progress.

        A scan of the open connections, only ever at the cap.
        """
        waiting = [
            c for c in self.connections if isinstance(c, GuardedHttpToolsProtocol) and c.idle
        ]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c._idle_since)
        oldest.drop()
        return True

    @property
    def idle(self) -> bool:
        """No request is being served: nothing sent yet, half a head, or between requests."""
        return self.cycle is None or self.cycle.response_complete

    def drop(self) -> None:
        """Close at once, without a response (the peer sent no complete request)."""
        self._disarm_deadline()
        self.connections.discard(self)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_deadline()
        super().connection_lost(exc)

    # --- request deadline -----------------------------------------------------------------

    def _arm_deadline(self) -> None:
        self._disarm_deadline()
        self._deadline = self.loop.call_later(self._request_timeout, self._deadline_passed)

    def _disarm_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self) -> None:
        self._deadline = None
        if self.cycle is None or self.cycle.response_complete or not self.cycle.response_started:
            # The request never finished arriving: the app (if it started) sees a disconnect.
            self.drop()
            if self.cycle is not None and not self.cycle.response_complete:
                self.cycle.disconnected = True
                self.cycle.message_event.set()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._raw_head_bytes = 0
        self._header_bytes = 0
        if self._deadline is None:
            self._arm_deadline()

    def on_message_complete(self) -> None:
        self._disarm_deadline()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._idle_since = time.monotonic()
        super().on_response_complete()

    # --- request-head bounds --------------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        if len(self.url) + len(url) > self._max_url_bytes:
            self._refusal = 414
            raise _HeadTooLarge()
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        # Catches a head that arrived whole in one read, which the raw count never sees.
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self._max_header_bytes:
            self._refusal = 431
            raise _HeadTooLarge()
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        if self.parser is None:
            return
        super().data_received(data)
        if self._refusal or self.transport.is_closing():
            return
        if self.parser is not None and self._in_head:
            # Everything fed while the head is still incomplete is head: count it as it
            # arrives, so a huge header is refused after one read, never buffered whole.
            self._raw_head_bytes += len(data)
            if self._raw_head_bytes > self._max_header_bytes:
                self._refuse(431)

    def send_400_response(self, msg: str) -> None:
        # httptools turns an exception raised in a callback into its own parser error, which
        # uvicorn answers with a 400: a bound's refusal answers with its own status instead.
        if self._refusal:
            self._refuse(self._refusal)
        else:
            super().send_400_response(msg)

    def _refuse(self, status: int) -> None:
        self._refusal = status
        self._disarm_deadline()
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(
            _STATUS_LINES[status]
            + b"content-length: 0\r\nconnection: close\r\ncache-control: no-store\r\n\r\n"
        )
        self.transport.close()
