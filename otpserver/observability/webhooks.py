"""Audit events to a webhook, signed the Standard Webhooks way, off the request path.

Each event is one POST with the headers `webhook-id`, `webhook-timestamp` and
`webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`
(https://www.standardwebhooks.com/), so receivers verify it with any Standard Webhooks
library and reject replays by id and by age.

Delivery is best effort: requests queue in memory (bounded; when full, new events are
dropped and counted, never waiting), one thread sends them, each up to `attempts` times
with a growing pause, each attempt re-signed with a fresh timestamp under the same id.
The request that caused an event never waits for it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.client
import logging
import queue
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

log = logging.getLogger("otpserver.events")

QUEUE_SIZE = 1000
"""Events waiting to be sent; past this the newest are dropped (the log still has them)."""
ATTEMPTS = 4
"""Tries per event: the first, then retries after `BACKOFF_SECONDS` doubling each time."""
BACKOFF_SECONDS = 0.5
TIMEOUT_SECONDS = 5.0


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one attempt."""
    signed = message_id.encode() + b"." + str(timestamp).encode() + b"." + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@dataclass(frozen=True, slots=True)
class _Event:
    message_id: str
    body: bytes


class WebhookSender:
    """A bounded queue of signed POSTs to one URL, drained by one daemon thread."""

    def __init__(
        self,
        url: str,
        key: bytes,
        *,
        attempts: int = ATTEMPTS,
        backoff_seconds: float = BACKOFF_SECONDS,
        queue_size: int = QUEUE_SIZE,
        timeout_seconds: float = TIMEOUT_SECONDS,
    ) -> None:
        self._url = url
        self._key = key
        self._attempts = attempts
        self._backoff_seconds = backoff_seconds
        self._timeout_seconds = timeout_seconds
        self._queue: queue.Queue[_Event | None] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._dropped = 0
        # The host only: a webhook URL may carry a token in its path or query.
        self._where = urlsplit(url).hostname or "the events webhook"
        # Started by the first event, so a process that only checks the configuration (or a
        # supervisor whose workers serve) holds no idle thread.
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def dropped(self) -> int:
        """Events dropped because the queue was full."""
        return self._dropped

    def submit(self, message_id: str, body: bytes) -> None:
        """Queue one event; never blocks (a full queue drops it and says so once per burst)."""
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="otp-events-webhook", daemon=True
                    )
                    self._thread.start()
        try:
            self._queue.put_nowait(_Event(message_id, body))
        except queue.Full:
            self._dropped += 1
            if self._dropped == 1 or self._dropped % QUEUE_SIZE == 0:
                log.warning("events webhook queue full: %d event(s) dropped", self._dropped)

    def close(self, timeout_seconds: float = 5.0) -> None:
        """Send what is queued, for at most `timeout_seconds`, then stop the thread."""
        if self._thread is None:
            return
        deadline = time.monotonic() + timeout_seconds
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout_seconds)
        self._thread.join(max(0.0, deadline - time.monotonic()))
        self._stop.set()

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            self._deliver(event)

    def _post(self, headers: dict[str, str], body: bytes) -> int:
        """One POST, the status it got. The standard library's client, not httpx: httpx
        logs each request's full URL, and this URL may carry a token. No redirect is
        followed (a moved endpoint is a configuration error, and a redirect could send
        the events elsewhere)."""
        parts = urlsplit(self._url)
        connection_class = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        connection = connection_class(
            parts.hostname or "", parts.port, timeout=self._timeout_seconds
        )
        try:
            target = parts.path or "/"
            if parts.query:
                target += "?" + parts.query
            connection.request("POST", target, body=body, headers=headers)
            return connection.getresponse().status
        finally:
            connection.close()

    def _deliver(self, event: _Event) -> None:
        pause = self._backoff_seconds
        problem, attempt = "", 0
        for attempt in range(1, self._attempts + 1):
            timestamp = int(time.time())
            headers = {
                "content-type": "application/json",
                "webhook-id": event.message_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": signature(self._key, event.message_id, timestamp, event.body),
            }
            try:
                status = self._post(headers, event.body)
            except (OSError, http.client.HTTPException) as error:
                problem = type(error).__name__
            else:
                if 200 <= status < 300:
                    return
                problem = f"HTTP {status}"
            if attempt == self._attempts or self._stop.wait(pause):
                break
            pause *= 2
        log.warning(
            "events webhook at %s did not take event %s after %d attempt(s): %s",
            self._where,
            event.message_id,
            attempt,
            problem,
        )
