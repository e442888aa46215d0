"""The contract between the core and a sender: the message to deliver and the error to raise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from otpserver.otp.credentials import Credential


@dataclass(frozen=True, slots=True)
class OutgoingCode:
    """Everything a sender needs to deliver one code, and nothing it should not see.

    `origin_host` is the host name the browser used (for the `@host #code` autofill line);
    `locale` is the client's explicit choice and `accept_language` the raw header, so the
    sender can pick a template language; `ttl_seconds` is the code's lifetime. `link`, when
    present (`OTP_LINKS=true`, email only), is a sign-in link for the same code: it signs in
    only the browser that asked for the code, so a mail scanner that follows it spends nothing.
    """

    credential: Credential
    code: str
    ttl_seconds: int
    origin_host: str
    locale: str | None = None
    accept_language: str | None = None
    is_resend: bool = False
    link: str | None = None


class DeliveryError(Exception):
    """Raised by a sender when a code could not be handed to the provider.

    The core answers `SEND:FAILED` (502) and rolls the request back: no pending token, no
    consumed cookie ID, no counted resend. The message is logged, so it must never contain
    the code.
    """


@runtime_checkable
class Sender(Protocol):
    """Delivers codes. `development_only` senders are refused at start-up in production."""

    development_only: bool

    async def send(self, message: OutgoingCode) -> None:
        """Deliver `message` or raise `DeliveryError`."""
        ...
