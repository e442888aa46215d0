"""Channel routing, the console sender, and the default sender built from configuration."""

from __future__ import annotations

import io

import pytest

from otpserver.delivery import (
    ChannelSender,
    ConsoleSender,
    DeliveryConfig,
    OutboxSender,
    SmtpConfig,
    SmtpSender,
    Templates,
    TwilioConfig,
    TwilioSmsSender,
    WebhookConfig,
    WebhookSmsSender,
    build_sender,
)
from otpserver.delivery.message import DeliveryError, OutgoingCode, Sender
from otpserver.errors import ConfigError
from otpserver.otp.credentials import Credential

SMTP = SmtpConfig(host="smtp.example.com", from_address="otp@example.com")
WEBHOOK = WebhookConfig(url="https://sms.example.com/send", secret="s" * 32)
TWILIO = TwilioConfig(account_sid="AC" + "0" * 32, auth_token="t", sender="+14155550100")


def outgoing(channel: str, address: str) -> OutgoingCode:
    """A message for `address` on `channel`."""
    return OutgoingCode(Credential(channel, address), "123456", 300, "example.com")


async def test_console_prints_exactly_one_line_to_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The development sender writes one line with the address and code to stderr, nothing else."""
    await ConsoleSender().send(outgoing("email", "user@example.com"))
    captured = capsys.readouterr()
    assert captured.err == "otp dev-sender: to=user@example.com code=123456\n"
    assert captured.out == ""
    assert ConsoleSender.development_only is True


async def test_channels_are_routed_to_their_sender() -> None:
    """Each message goes to the sender of its credential's channel only."""
    email_out, phone_out = io.StringIO(), io.StringIO()
    router = ChannelSender({"email": ConsoleSender(email_out), "phone": ConsoleSender(phone_out)})
    await router.send(outgoing("phone", "+14155550100"))
    assert email_out.getvalue() == ""
    assert phone_out.getvalue() == "otp dev-sender: to=+14155550100 code=123456\n"


async def test_unknown_channel_is_a_delivery_error() -> None:
    """A channel without a sender fails the send cleanly instead of crashing."""
    router = ChannelSender({"email": ConsoleSender(io.StringIO())})
    with pytest.raises(DeliveryError, match="'fax'"):
        await router.send(outgoing("fax", "+14155550100"))


async def test_router_is_development_only_if_any_sender_is() -> None:
    """One development sender behind the router makes the whole router development-only."""
    webhook = WebhookSmsSender(WEBHOOK, Templates.load())
    try:
        assert ChannelSender({"phone": webhook}).development_only is False
        mixed = ChannelSender({"phone": webhook, "email": ConsoleSender()})
        assert mixed.development_only is True
    finally:
        await webhook.aclose()


async def test_development_build_records_and_prints() -> None:
    """In development the default sender prints the code and keeps it in the outbox."""
    sender = build_sender(DeliveryConfig(), development=True)
    assert isinstance(sender, OutboxSender)
    assert sender.development_only is True
    await sender.send(outgoing("email", "user@example.com"))
    (message,) = sender.outbox.messages()
    assert (message.to, message.code) == ("user@example.com", "123456")


@pytest.mark.parametrize(
    ("config", "variable"),
    [
        (DeliveryConfig(), "OTP_EMAIL_PROVIDER"),
        (DeliveryConfig(email_provider="smtp", smtp=SMTP), "OTP_SMS_PROVIDER"),
    ],
)
def test_production_refuses_console_providers(config: DeliveryConfig, variable: str) -> None:
    """Production start-up stops naming the provider variable still set to console."""
    with pytest.raises(ConfigError, match=f"{variable}=console"):
        build_sender(config, development=False)


@pytest.mark.parametrize(
    ("config", "sms_type"),
    [
        (
            DeliveryConfig(email_provider="smtp", smtp=SMTP, sms_provider="twilio", twilio=TWILIO),
            TwilioSmsSender,
        ),
        (
            DeliveryConfig(
                email_provider="smtp", smtp=SMTP, sms_provider="webhook", webhook=WEBHOOK
            ),
            WebhookSmsSender,
        ),
    ],
)
async def test_production_build_uses_the_configured_providers(
    config: DeliveryConfig, sms_type: type[Sender]
) -> None:
    """With real providers configured the default sender routes to them and is production-ready."""
    sender = build_sender(config, development=False)
    assert isinstance(sender, ChannelSender)
    try:
        assert sender.development_only is False
        assert sorted(sender.by_channel) == ["email", "phone"]
        assert isinstance(sender.by_channel["email"], SmtpSender)
        assert isinstance(sender.by_channel["phone"], sms_type)
    finally:
        await sender.aclose()


async def test_a_channel_set_to_none_is_switched_off() -> None:
    """With OTP_SMS_PROVIDER=none, production starts and phone sends fail cleanly."""
    config = DeliveryConfig.from_env(
        {
            "OTP_EMAIL_PROVIDER": "smtp",
            "OTP_SMTP_HOST": "127.0.0.1",
            "OTP_EMAIL_FROM": "no-reply@example.com",
            "OTP_SMS_PROVIDER": "none",
        }
    )
    sender = build_sender(config, development=False)
    assert isinstance(sender, ChannelSender)
    assert set(sender.by_channel) == {"email"}
    message = OutgoingCode(Credential("phone", "+14155552671"), "123456", 300, "example.com")
    with pytest.raises(DeliveryError, match="phone"):
        await sender.send(message)
