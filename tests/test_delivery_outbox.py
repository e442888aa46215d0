"""The development outbox: bounded, rendered like the real messages, served newest first."""

from __future__ import annotations

import io

import httpx
import pytest
from starlette.applications import Starlette

from otpserver.delivery import (
    ChannelSender,
    ConsoleSender,
    Outbox,
    OutboxMessage,
    OutboxSender,
    Templates,
    outbox_routes,
)
from otpserver.delivery.message import DeliveryError, OutgoingCode
from otpserver.otp.credentials import Credential

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


@pytest.fixture(scope="module")
def templates() -> Templates:
    """The shipped templates, loaded once."""
    return Templates.load()


def outgoing(channel: str, address: str, code: str = "123456") -> OutgoingCode:
    """A message for `address` on `channel`, in German."""
    return OutgoingCode(Credential(channel, address), code, 300, "example.com", locale="de")


def recorded(n: int) -> OutboxMessage:
    """The n-th of a series of recorded text messages."""
    return OutboxMessage("phone", "+14155550100", None, f"text {n}", None, str(n), "t")


class FailingSender:
    """A provider that always refuses."""

    development_only = False

    async def send(self, message: OutgoingCode) -> None:
        """Refuse the message."""
        raise DeliveryError("provider down")


def test_outbox_keeps_the_newest_messages() -> None:
    """Past its bound the outbox forgets the oldest message and lists the newest first."""
    outbox = Outbox(max_messages=2)
    for n in range(3):
        outbox.add(recorded(n))
    assert [m.code for m in outbox.messages()] == ["2", "1"]
    outbox.clear()
    assert outbox.messages() == []
    with pytest.raises(ValueError, match="at least 1"):
        Outbox(max_messages=0)


async def test_email_is_recorded_as_rendered_then_delivered(templates: Templates) -> None:
    """An email is recorded with subject and both bodies, then passed to the wrapped sender."""
    stream = io.StringIO()
    outbox = Outbox()
    sender = OutboxSender(ConsoleSender(stream), outbox, templates, now=lambda: NOW)
    message = outgoing("email", "user@example.com")
    await sender.send(message)
    rendered = templates.email(message)
    assert outbox.messages() == [
        OutboxMessage(
            channel="email",
            to="user@example.com",
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            code="123456",
            sent_at="2023-11-14T22:13:20Z",
        )
    ]
    assert "Bestätigungscode" in rendered.subject
    assert stream.getvalue() == "otp dev-sender: to=user@example.com code=123456\n"


async def test_text_message_is_recorded_without_email_fields(templates: Templates) -> None:
    """A phone message is recorded as the SMS text, ending with its autofill line."""
    outbox = Outbox()
    sender = OutboxSender(ConsoleSender(io.StringIO()), outbox, templates)
    await sender.send(outgoing("phone", "+14155550100", code="654321"))
    (message,) = outbox.messages()
    assert (message.channel, message.to, message.code) == ("phone", "+14155550100", "654321")
    assert (message.subject, message.html) == (None, None)
    assert message.text.splitlines()[-1] == "@example.com #654321"


async def test_outbox_sender_is_development_only(templates: Templates) -> None:
    """Wrapping a production sender still yields a sender production refuses."""
    sender = OutboxSender(ChannelSender({"phone": FailingSender()}), Outbox(), templates)
    assert sender.development_only is True


async def test_failed_delivery_is_recorded_and_raised(templates: Templates) -> None:
    """The wrapped sender's `DeliveryError` reaches the core; the outbox still shows the message."""
    outbox = Outbox()
    sender = OutboxSender(FailingSender(), outbox, templates)
    with pytest.raises(DeliveryError, match="provider down"):
        await sender.send(outgoing("phone", "+14155550100"))
    assert len(outbox.messages()) == 1


async def test_route_serves_messages_newest_first() -> None:
    """`GET /dev/outbox` answers JSON with every field, newest message first."""
    outbox = Outbox()
    outbox.add(OutboxMessage("email", "a@example.com", "s", "t", "<p>h</p>", "111111", "x"))
    outbox.add(recorded(2))
    transport = httpx.ASGITransport(app=Starlette(routes=outbox_routes(outbox)))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/dev/outbox")
        assert (await client.post("/dev/outbox")).status_code == 405
    assert response.status_code == 200
    assert response.json() == {
        "messages": [
            {
                "channel": "phone",
                "to": "+14155550100",
                "subject": None,
                "text": "text 2",
                "html": None,
                "code": "2",
                "sentAt": "t",
            },
            {
                "channel": "email",
                "to": "a@example.com",
                "subject": "s",
                "text": "t",
                "html": "<p>h</p>",
                "code": "111111",
                "sentAt": "x",
            },
        ]
    }
