"""Development outbox: the last rendered messages, readable at `GET /dev/outbox`.

It lets a developer (or an end-to-end test) see exactly what a user would receive without
a mail server or a phone. Everything here is `development_only`; the core mounts the route
only in development.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from otpserver.delivery.message import OutgoingCode, Sender
from otpserver.delivery.templates import Templates


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One message as the user would see it; email fields are None for text messages."""

    channel: str
    to: str
    subject: str | None
    text: str
    html: str | None
    code: str
    sent_at: str

    def to_json(self) -> dict[str, str | None]:
        """The JSON shape served by `GET /dev/outbox` (camelCase, like the rest of the API)."""
        return {
            "channel": self.channel,
            "to": self.to,
            "subject": self.subject,
            "text": self.text,
            "html": self.html,
            "code": self.code,
            "sentAt": self.sent_at,
        }


class Outbox:
    """The last `max_messages` messages, oldest dropped first."""

    def __init__(self, max_messages: int = 100) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        self._messages: deque[OutboxMessage] = deque(maxlen=max_messages)

    def add(self, message: OutboxMessage) -> None:
        """Record one message, forgetting the oldest when full."""
        self._messages.append(message)

    def messages(self) -> list[OutboxMessage]:
        """Every recorded message, newest first."""
        return list(reversed(self._messages))

    def clear(self) -> None:
        """Forget every message."""
        self._messages.clear()


class OutboxSender:
    """Records each message in an `Outbox`, then hands it to the wrapped sender.

    Email channels are rendered as email, every other channel as a text message, with the
    same templates the real senders use.
    """

    development_only = True

    def __init__(
        self,
        inner: Sender,
        outbox: Outbox,
        templates: Templates,
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.inner = inner
        self.outbox = outbox
        self._templates = templates
        self._now = now

    async def send(self, message: OutgoingCode) -> None:
        """Record `message` as rendered, then deliver it through the wrapped sender."""
        self.outbox.add(self._render(message))
        await self.inner.send(message)

    async def aclose(self) -> None:
        """Close the wrapped sender's connections, if it holds any."""
        aclose = getattr(self.inner, "aclose", None)
        if aclose is not None:
            await aclose()

    def _render(self, message: OutgoingCode) -> OutboxMessage:
        """The message as the user would receive it."""
        sent_at = datetime.fromtimestamp(int(self._now()), UTC).isoformat().replace("+00:00", "Z")
        channel, to = message.credential.channel, message.credential.address
        if channel == "email":
            email = self._templates.email(message)
            return OutboxMessage(
                channel, to, email.subject, email.text, email.html, message.code, sent_at
            )
        sms = self._templates.sms(message)
        return OutboxMessage(channel, to, None, sms.text, None, message.code, sent_at)


def outbox_routes(outbox: Outbox) -> list[Route]:
    """`GET /dev/outbox` → `{"messages": [...]}`, newest first; mount in development only."""

    async def list_messages(request: Request) -> JSONResponse:
        return JSONResponse({"messages": [m.to_json() for m in outbox.messages()]})

    return [Route("/dev/outbox", list_messages, methods=["GET"])]
