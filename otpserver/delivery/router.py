"""Routing by channel, and the default sender assembled from `DeliveryConfig`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from otpserver.delivery.console import ConsoleSender
from otpserver.delivery.message import DeliveryError, OutgoingCode, Sender
from otpserver.delivery.outbox import Outbox, OutboxSender
from otpserver.delivery.smtp import SmtpSender
from otpserver.delivery.templates import DEFAULT_TEMPLATES_DIR, Templates
from otpserver.delivery.twilio import TwilioSmsSender
from otpserver.delivery.webhook import WebhookSmsSender
from otpserver.errors import ConfigError
from otpserver.observability import metrics
from otpserver.settings.delivery import DeliveryConfig


class ChannelSender:
    """Hands each message to the sender registered for its credential's channel.

    It is `development_only` as soon as one of its senders is, so a development sender
    behind a router is still refused in production.
    """

    def __init__(self, by_channel: Mapping[str, Sender]) -> None:
        self.by_channel: Mapping[str, Sender] = MappingProxyType(dict(by_channel))
        self.development_only = any(s.development_only for s in self.by_channel.values())

    async def send(self, message: OutgoingCode) -> None:
        """Deliver through the channel's sender; `DeliveryError` for an unknown channel."""
        sender = self.by_channel.get(message.credential.channel)
        if sender is None:
            raise DeliveryError(
                f"no sender is configured for channel {message.credential.channel!r}"
            )
        with metrics.timed_send(message.credential.channel, metrics.provider_name(sender)):
            await sender.send(message)

    async def aclose(self) -> None:
        """Close the senders that hold connections (those with an `aclose` method)."""
        for sender in self.by_channel.values():
            aclose = getattr(sender, "aclose", None)
            if aclose is not None:
                await aclose()


def build_sender(
    config: DeliveryConfig,
    *,
    development: bool,
    templates_dir: Path = DEFAULT_TEMPLATES_DIR,
) -> Sender:
    """The default sender: email and phone routed to the configured providers.

    In development every message is also recorded in an `Outbox`; reach it through the
    returned `OutboxSender.outbox` to mount `outbox_routes`. In production a console
    provider is refused here, naming the variable to change.
    """
    templates = Templates.load(
        templates_dir,
        default_locale=config.default_locale,
        autofill_domain=config.autofill_domain,
    )
    if not development:
        for name, provider, choices in (
            ("OTP_EMAIL_PROVIDER", config.email_provider, "smtp"),
            ("OTP_SMS_PROVIDER", config.sms_provider, "twilio or webhook"),
        ):
            if provider == "console":
                raise ConfigError(
                    f"{name}=console prints codes and is for OTP_ENV=development only; "
                    f"choose {choices}"
                )
    # A channel set to "none" is left out: its sends fail with SEND:FAILED, which is what an
    # email-only (or SMS-only) deployment wants for the other kind of credential.
    by_channel: dict[str, Sender] = {}
    if config.email_provider != "none":
        by_channel["email"] = _email_sender(config, templates)
    if config.sms_provider != "none":
        by_channel["phone"] = _sms_sender(config, templates)
    router = ChannelSender(by_channel)
    return OutboxSender(router, Outbox(), templates) if development else router


def _email_sender(config: DeliveryConfig, templates: Templates) -> Sender:
    """The sender for the `email` channel."""
    if config.smtp is not None:
        return SmtpSender(config.smtp, templates)
    return ConsoleSender()


def _sms_sender(config: DeliveryConfig, templates: Templates) -> Sender:
    """The sender for the `phone` channel."""
    timeout_seconds, retries = config.http_timeout_seconds, config.http_retries
    if config.twilio is not None:
        return TwilioSmsSender(
            config.twilio, templates, timeout_seconds=timeout_seconds, retries=retries
        )
    if config.webhook is not None:
        return WebhookSmsSender(
            config.webhook, templates, timeout_seconds=timeout_seconds, retries=retries
        )
    return ConsoleSender()
