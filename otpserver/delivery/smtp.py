"""Email through an SMTP server (aiosmtplib): implicit TLS, required STARTTLS, or plain.

The message holds the validated address, the code and the operator's own texts, nothing
else a client sent. Every header value is checked for CR, LF and NUL before the message is
built, so a header can never be split even if a bad value got past validation.

`OTP_SMTP_TIMEOUT_SECONDS` bounds the whole exchange, goodbye included: at the deadline the
connection is dropped, not closed politely (a polite QUIT to a stalled relay waited a second
full timeout). A relay that has been handed the message but has not confirmed it by then may
still deliver it, so that send counts as made and its code stays valid (a warning is
logged); failing it would roll the code back while the mail carrying it arrives anyway.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate
from typing import Any

import aiosmtplib
from email_validator import EmailNotValidError, validate_email

from otpserver.delivery.message import DeliveryError, OutgoingCode
from otpserver.delivery.templates import RenderedEmail, Templates
from otpserver.otp.addresses import has_encoded_word
from otpserver.settings.delivery import SmtpConfig

log = logging.getLogger("otpserver.delivery.smtp")

_LINE_BREAKERS = frozenset("\r\n\0")
_MAX_DETAIL_CHARS = 200


def build_email(config: SmtpConfig, to: str, email: RenderedEmail) -> EmailMessage:
    """A multipart/alternative message (text, then HTML) with Date and Message-ID.

    Raises `DeliveryError` if any header value contains CR, LF or NUL.
    """
    for value in (to, email.subject, config.from_address, config.from_name):
        if _LINE_BREAKERS.intersection(value):
            raise DeliveryError("refusing an email header that contains a line break or NUL")
    if has_encoded_word(to) or has_encoded_word(config.from_address):
        # Validation already refuses these; this keeps any other path from reaching the
        # email library, which may decode the word into a raw line break (CVE-2024-6923).
        raise DeliveryError("refusing an email address whose local part holds an encoded word")
    sender = _address(config.from_address, config.from_name)
    recipient = _address(to)
    message = EmailMessage(policy=SMTP)
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = email.subject
    message["Date"] = formatdate(usegmt=True)
    # Random and on the sender's domain: make_msgid() would leak the process id and
    # could block on a DNS lookup of the local host name.
    message["Message-ID"] = f"<{secrets.token_hex(16)}@{sender.domain}>"
    # RFC 3834: tells auto-responders (vacation replies) not to answer.
    message["Auto-Submitted"] = "auto-generated"
    # Quoted-printable keeps every byte 7-bit, so servers without 8BITMIME relay it intact,
    # while the ASCII code stays readable on its own line.
    message.set_content(email.text, cte="quoted-printable")
    message.add_alternative(email.html, subtype="html", cte="quoted-printable")
    return message


def _address(value: str, display_name: str = "") -> Address:
    """`value` checked again, its domain in ASCII (IDNA) so only the local part may need UTF-8.

    aiosmtplib asks for SMTPUTF8 by itself when a local part is not ASCII.
    """
    try:
        checked = validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        raise DeliveryError("refusing an email address that does not validate") from None
    return Address(
        display_name=display_name, username=checked.local_part, domain=checked.ascii_domain
    )


class SmtpSender:
    """Sends each code as one email; `tls_context` overrides the system's trusted CAs."""

    development_only = False

    def __init__(
        self,
        config: SmtpConfig,
        templates: Templates,
        *,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self._config = config
        self._templates = templates
        self._tls_context = tls_context

    async def send(self, message: OutgoingCode) -> None:
        """Deliver one email within the timeout, or raise `DeliveryError` without the code."""
        config = self._config
        email = self._templates.email(message)
        mime = build_email(config, message.credential.address, email)
        client = _Client(
            hostname=config.host,
            port=config.port,
            username=config.username,
            password=config.password,
            use_tls=config.security == "tls",
            # True, not None: a server that does not offer STARTTLS is an error,
            # never a silent fall back to plain text.
            start_tls=config.security == "starttls",
            timeout=config.timeout_seconds,
            tls_context=self._tls_context,
        )
        try:
            # One deadline for every step, QUIT included; aiosmtplib's own timeout only
            # bounds each step.
            async with asyncio.timeout(config.timeout_seconds):
                await client.connect()
                await client.send_message(mime)
                await client.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            if client.handed_over and isinstance(exc, TimeoutError):
                log.warning(
                    "SMTP relay did not confirm the message within the deadline; it may "
                    "still deliver it, so its code stays valid"
                )
                return
            # Chained exceptions could carry server text into a traceback: keep only ours.
            raise DeliveryError(_describe(exc, message.code)) from None
        finally:
            # Drops the connection without waiting: after the deadline, nothing more is owed.
            client.close()


class _Client(aiosmtplib.SMTP):
    """aiosmtplib's client, noting when the message itself starts to go to the relay."""

    handed_over = False
    """True once DATA was sent: from then on the relay may deliver the message."""

    async def data(self, message: str | bytes, /, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        self.handed_over = True
        return await super().data(message, **kwargs)


def _describe(exc: Exception, code: str) -> str:
    """A log-safe summary of an SMTP failure: the error kind and detail, never the code."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        detail = f"reply {exc.code} {exc.message}"
    else:
        detail = str(exc)
    # A server may echo what it refused; repr() keeps its line breaks out of the log.
    detail = detail.replace(code, "[code]")[:_MAX_DETAIL_CHARS]
    return f"SMTP delivery failed ({type(exc).__name__}: {detail!r})"
