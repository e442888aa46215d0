"""Email through an SMTP server (aiosmtplib): implicit TLS, required STARTTLS, or plain.

The message holds the validated address, the code and the operator's own texts, nothing
else a client sent. Every header value is checked for CR, LF and NUL before the message is
built, so a header can never be split even if a bad value got past validation.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate

import aiosmtplib
from email_validator import EmailNotValidError, validate_email

from otpserver.delivery.message import DeliveryError, OutgoingCode
from otpserver.delivery.templates import RenderedEmail, Templates
from otpserver.settings.delivery import SmtpConfig

_LINE_BREAKERS = frozenset("\r\n\0")
_MAX_DETAIL_CHARS = 200


def build_email(config: SmtpConfig, to: str, email: RenderedEmail) -> EmailMessage:
    """A multipart/alternative message (text, then HTML) with Date and Message-ID.

    Raises `DeliveryError` if any header value contains CR, LF or NUL.
    """
    for value in (to, email.subject, config.from_address, config.from_name):
        if _LINE_BREAKERS.intersection(value):
            raise DeliveryError("refusing an email header that contains a line break or NUL")
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
        try:
            # aiosmtplib's timeout bounds each step; this bounds the whole exchange.
            async with asyncio.timeout(config.timeout_seconds):
                await aiosmtplib.send(
                    mime,
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
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # Chained exceptions could carry server text into a traceback: keep only ours.
            raise DeliveryError(_describe(exc, message.code)) from None


def _describe(exc: Exception, code: str) -> str:
    """A log-safe summary of an SMTP failure: the error kind and detail, never the code."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        detail = f"reply {exc.code} {exc.message}"
    else:
        detail = str(exc)
    # A server may echo what it refused; repr() keeps its line breaks out of the log.
    detail = detail.replace(code, "[code]")[:_MAX_DETAIL_CHARS]
    return f"SMTP delivery failed ({type(exc).__name__}: {detail!r})"
