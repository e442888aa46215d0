"""Code delivery: email over SMTP, SMS over Twilio or a signed webhook, and development aids.

`custom/send.py` calls `build_sender(settings.delivery, development=...)`; everything else
here is for forkers who assemble their own sender from these parts.
"""

from otpserver.delivery.console import ConsoleSender
from otpserver.delivery.outbox import Outbox, OutboxMessage, OutboxSender, outbox_routes
from otpserver.delivery.router import ChannelSender, build_sender
from otpserver.delivery.smtp import SmtpSender, build_email
from otpserver.delivery.templates import (
    DEFAULT_TEMPLATES_DIR,
    RenderedEmail,
    RenderedText,
    Templates,
)
from otpserver.delivery.twilio import TwilioSmsSender
from otpserver.delivery.webhook import WebhookSmsSender, sign_webhook, verify_webhook_signature
from otpserver.settings.delivery import (
    DELIVERY_ENV_VARS,
    DeliveryConfig,
    SmtpConfig,
    TwilioConfig,
    WebhookConfig,
)

__all__ = [
    "DEFAULT_TEMPLATES_DIR",
    "DELIVERY_ENV_VARS",
    "ChannelSender",
    "ConsoleSender",
    "DeliveryConfig",
    "Outbox",
    "OutboxMessage",
    "OutboxSender",
    "RenderedEmail",
    "RenderedText",
    "SmtpConfig",
    "SmtpSender",
    "Templates",
    "TwilioConfig",
    "TwilioSmsSender",
    "WebhookConfig",
    "WebhookSmsSender",
    "build_email",
    "build_sender",
    "outbox_routes",
    "sign_webhook",
    "verify_webhook_signature",
]
