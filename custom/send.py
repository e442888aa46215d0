"""Edit this file to choose how codes are delivered: email, SMS, or a channel of your own.

The contract
    `make_sender(settings)` runs once at start-up and returns a `Sender`: an object with a
    `development_only: bool` attribute and `async def send(self, message: OutgoingCode)`.
    `message.credential.channel` says where to send (`"email"` or `"phone"` with the default
    credential schema, or a channel your `custom/credential.py` adds) and
    `message.credential.address` to whom; `message.code`, `message.ttl_seconds`,
    `message.origin_host`, `message.locale` and `message.accept_language` are what a message
    is written from. `message.link` is a sign-in link for the same code (emails only, with
    `OTP_LINKS=true`; None otherwise): show it beside the code, never instead of it.

What the core guarantees before calling `send`
    The credential is validated and normalized (lower-case email without CR/LF/NUL, or an
    E.164 number), the rate limits and send budgets have been checked, and nothing about the
    code has been logged. If `send` fails, the request is rolled back: no pending code, no
    used cookie, no counted resend.

What to raise
    `otpserver.DeliveryError` for every failure (the client gets `SEND:FAILED`, 502).
    Its message is logged, so it must never contain the code. Anything else is a bug and
    becomes a 500.

The default
    `build_sender` reads the `OTP_EMAIL_PROVIDER` / `OTP_SMS_PROVIDER` family of variables
    (see `sample.env`): SMTP for email; Twilio or a signed webhook for SMS; the console for
    both in development, where every message is also kept at `GET /dev/outbox`. The texts
    come from `custom/templates/<language>/`; add a folder to add a language. The console
    sender is `development_only`, so production refuses to start until real providers are
    configured.

Swapping a provider takes a few lines. For example, to send SMS through another API while
keeping SMTP for email:

    from otpserver import ChannelSender, ConfigError, DeliveryError, OutgoingCode
    from otpserver import SmtpSender, Templates

    class AcmeSmsSender:
        development_only = False

        def __init__(self, templates: Templates) -> None:
            self.templates = templates

        async def send(self, message: OutgoingCode) -> None:
            text = self.templates.sms(message).text
            ok = await acme_client.send(to=message.credential.address, body=text)
            if not ok:
                raise DeliveryError("Acme refused the message")

    def make_sender(settings: Settings) -> Sender:
        config = settings.delivery
        templates = Templates.load(
            default_locale=config.default_locale, autofill_domain=config.autofill_domain
        )
        if config.smtp is None:
            raise ConfigError("OTP_EMAIL_PROVIDER must be smtp")
        return ChannelSender({
            "email": SmtpSender(config.smtp, templates),
            "phone": AcmeSmsSender(templates),
        })

A channel left out of the mapping fails its sends with `SEND:FAILED`; to offer email only,
map just `"email"` (and refuse phone numbers in `custom/credential.py`).

Trade-offs
    Email proves control of a mailbox and SMS of a number; neither is a strong second factor
    (NIST SP 800-63B calls SMS "restricted"). SMTP delivery is slower than an API but works
    with any provider. SMS costs money per message and attracts toll fraud (SMS pumping):
    keep the send limits tight and accept only the countries you serve. A webhook keeps
    provider keys out of this server at the price of running a gateway that must check the
    signature (`otpserver.verify_webhook_signature`).
"""

from __future__ import annotations

from otpserver import Sender, Settings, build_sender


def make_sender(settings: Settings) -> Sender:
    """The providers chosen by the environment; in development, also the outbox."""
    return build_sender(settings.delivery, development=settings.is_development)
