"""Delivery configuration: every variable is read, checked, and refused with one clear line."""

from __future__ import annotations

import dataclasses

import pytest

from otpserver.delivery import (
    DELIVERY_ENV_VARS,
    DeliveryConfig,
    SmtpConfig,
    TwilioConfig,
    WebhookConfig,
)
from otpserver.errors import ConfigError

SID = "AC" + "0123456789abcdef" * 2
SERVICE_SID = "MG" + "fedcba9876543210" * 2
SECRET = "s" * 32

SMTP_ENV = {
    "OTP_EMAIL_PROVIDER": "smtp",
    "OTP_SMTP_HOST": "smtp.example.com",
    "OTP_EMAIL_FROM": "Example <no-reply@example.com>",
}
TWILIO_ENV = {
    "OTP_SMS_PROVIDER": "twilio",
    "OTP_TWILIO_ACCOUNT_SID": SID,
    "OTP_TWILIO_AUTH_TOKEN": "token-value",
    "OTP_TWILIO_FROM": "+14155550100",
}
WEBHOOK_ENV = {
    "OTP_SMS_PROVIDER": "webhook",
    "OTP_SMS_WEBHOOK_URL": "https://sms.example.com/send?tenant=1",
    "OTP_SMS_WEBHOOK_SECRET": SECRET,
}


def refusal(environ: dict[str, str]) -> str:
    """The one-line message `from_env` refuses `environ` with."""
    with pytest.raises(ConfigError) as caught:
        DeliveryConfig.from_env(environ)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_defaults_are_the_development_console() -> None:
    """With no variable set, both channels use the console and every default applies."""
    config = DeliveryConfig.from_env({})
    assert config == DeliveryConfig()
    assert (config.email_provider, config.sms_provider) == ("console", "console")
    assert (config.smtp, config.twilio, config.webhook) == (None, None, None)
    assert (config.http_timeout_seconds, config.http_retries) == (5.0, 1)
    assert (config.default_locale, config.autofill_domain) == ("en", None)


def test_documented_defaults_match_the_code() -> None:
    """Setting every variable to its documented default changes nothing, empty means unset."""
    documented = {var.name: var.default for var in DELIVERY_ENV_VARS}
    empty = {var.name: "" for var in DELIVERY_ENV_VARS}
    assert DeliveryConfig.from_env(documented) == DeliveryConfig()
    assert DeliveryConfig.from_env(empty) == DeliveryConfig()


def test_env_var_list_is_complete_and_documented() -> None:
    """Every listed variable is unique, prefixed, commented on one line, and checked by from_env."""
    names = [var.name for var in DELIVERY_ENV_VARS]
    assert len(names) == len(set(names)) == 19
    for var in DELIVERY_ENV_VARS:
        assert var.name.startswith("OTP_")
        assert var.comment.strip()
        assert "\n" not in var.comment
        # A control character is refused by every variable, naming it: all are really read.
        assert var.name in refusal({var.name: "bad\x01value"})


def test_smtp_settings_are_parsed() -> None:
    """A complete SMTP setup yields an `SmtpConfig` with the display name split off."""
    config = DeliveryConfig.from_env(
        {
            **SMTP_ENV,
            "OTP_EMAIL_FROM": '"Example Inc." <No-Reply@Example.COM>',
            "OTP_SMTP_PORT": "465",
            "OTP_SMTP_SECURITY": "TLS",
            "OTP_SMTP_USERNAME": "mailer",
            "OTP_SMTP_PASSWORD": "pa ss",
            "OTP_SMTP_TIMEOUT_SECONDS": "2.5",
        }
    )
    assert config.smtp == SmtpConfig(
        host="smtp.example.com",
        from_address="No-Reply@example.com",
        from_name="Example Inc.",
        port=465,
        username="mailer",
        password="pa ss",
        security="tls",
        timeout_seconds=2.5,
    )


def test_bare_sender_address_has_no_display_name() -> None:
    """`OTP_EMAIL_FROM` may be a bare address."""
    config = DeliveryConfig.from_env({**SMTP_ENV, "OTP_EMAIL_FROM": "otp@example.com"})
    assert config.smtp is not None
    assert (config.smtp.from_name, config.smtp.from_address) == ("", "otp@example.com")


def test_twilio_settings_are_parsed() -> None:
    """A complete Twilio setup yields a `TwilioConfig`; a local API base is allowed over http."""
    config = DeliveryConfig.from_env(
        {**TWILIO_ENV, "OTP_TWILIO_FROM": SERVICE_SID, "OTP_TWILIO_API_BASE": "http://127.0.0.1:9/"}
    )
    assert config.twilio == TwilioConfig(
        account_sid=SID, auth_token="token-value", sender=SERVICE_SID, api_base="http://127.0.0.1:9"
    )
    assert DeliveryConfig.from_env(TWILIO_ENV).twilio == TwilioConfig(
        account_sid=SID, auth_token="token-value", sender="+14155550100"
    )


def test_webhook_and_shared_settings_are_parsed() -> None:
    """A webhook setup plus the HTTP, locale and autofill variables are all applied."""
    config = DeliveryConfig.from_env(
        {
            **WEBHOOK_ENV,
            "OTP_HTTP_TIMEOUT_SECONDS": "0.5",
            "OTP_HTTP_RETRIES": "0",
            "OTP_DEFAULT_LOCALE": "fr-CA",
            "OTP_AUTOFILL_DOMAIN": "Login.Example.com",
        }
    )
    assert config.webhook == WebhookConfig(url=WEBHOOK_ENV["OTP_SMS_WEBHOOK_URL"], secret=SECRET)
    assert (config.http_timeout_seconds, config.http_retries) == (0.5, 0)
    assert (config.default_locale, config.autofill_domain) == ("fr-CA", "login.example.com")


def test_secrets_stay_out_of_repr() -> None:
    """Printing a configuration never shows the SMTP password, Twilio token or webhook secret."""
    env = {**SMTP_ENV, **TWILIO_ENV, "OTP_SMTP_USERNAME": "u", "OTP_SMTP_PASSWORD": "hunter2pw"}
    shown = repr(DeliveryConfig.from_env(env)) + repr(DeliveryConfig.from_env(WEBHOOK_ENV))
    for secret in ("hunter2pw", "token-value", SECRET):
        assert secret not in shown


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"OTP_EMAIL_PROVIDER": "sendgrid"}, "OTP_EMAIL_PROVIDER"),
        ({"OTP_SMS_PROVIDER": "sns"}, "OTP_SMS_PROVIDER"),
        ({"OTP_SMTP_HOST": "smtp host"}, "OTP_SMTP_HOST"),
        ({"OTP_SMTP_PORT": "0"}, "OTP_SMTP_PORT"),
        ({"OTP_SMTP_PORT": "65536"}, "OTP_SMTP_PORT"),
        ({"OTP_SMTP_PORT": "+25"}, "OTP_SMTP_PORT"),
        ({"OTP_SMTP_PORT": "\uff12\uff15"}, "OTP_SMTP_PORT"),  # fullwidth digits
        ({"OTP_SMTP_SECURITY": "ssl"}, "OTP_SMTP_SECURITY"),
        ({"OTP_SMTP_TIMEOUT_SECONDS": "0"}, "OTP_SMTP_TIMEOUT_SECONDS"),
        ({"OTP_SMTP_TIMEOUT_SECONDS": "nan"}, "OTP_SMTP_TIMEOUT_SECONDS"),
        ({"OTP_SMTP_TIMEOUT_SECONDS": "121"}, "OTP_SMTP_TIMEOUT_SECONDS"),
        ({"OTP_SMTP_USERNAME": "mailer"}, "OTP_SMTP_PASSWORD"),
        ({"OTP_SMTP_PASSWORD": "secret"}, "OTP_SMTP_USERNAME"),
        (
            {"OTP_SMTP_USERNAME": "u", "OTP_SMTP_PASSWORD": "p", "OTP_SMTP_SECURITY": "none"},
            "OTP_SMTP_SECURITY",
        ),
        ({"OTP_EMAIL_FROM": "not-an-address"}, "OTP_EMAIL_FROM"),
        ({"OTP_EMAIL_FROM": "Name <no-domain>"}, "OTP_EMAIL_FROM"),
        ({"OTP_EMAIL_FROM": "Evil\r\nBcc: x@example.com <a@example.com>"}, "OTP_EMAIL_FROM"),
        ({"OTP_EMAIL_FROM": "a@example.com\r\nBcc: x@example.com"}, "OTP_EMAIL_FROM"),
        ({"OTP_TWILIO_ACCOUNT_SID": "AC123"}, "OTP_TWILIO_ACCOUNT_SID"),
        ({"OTP_TWILIO_AUTH_TOKEN": "tok\x00en"}, "OTP_TWILIO_AUTH_TOKEN"),
        ({"OTP_TWILIO_FROM": "4155550100"}, "OTP_TWILIO_FROM"),
        ({"OTP_TWILIO_FROM": "MGnothex"}, "OTP_TWILIO_FROM"),
        ({"OTP_TWILIO_API_BASE": "http://api.twilio.com"}, "OTP_TWILIO_API_BASE"),
        ({"OTP_TWILIO_API_BASE": "ftp://api.twilio.com"}, "OTP_TWILIO_API_BASE"),
        ({"OTP_TWILIO_API_BASE": "https://user:pw@api.twilio.com"}, "OTP_TWILIO_API_BASE"),
        ({"OTP_TWILIO_API_BASE": "https://api.twilio.com?x=1"}, "OTP_TWILIO_API_BASE"),
        ({"OTP_TWILIO_API_BASE": "https://[::1"}, "OTP_TWILIO_API_BASE"),
        ({"OTP_SMS_WEBHOOK_URL": "http://sms.example.com/send"}, "OTP_SMS_WEBHOOK_URL"),
        ({"OTP_SMS_WEBHOOK_URL": "https://sms.example.com/#x"}, "OTP_SMS_WEBHOOK_URL"),
        ({"OTP_SMS_WEBHOOK_SECRET": "s" * 31}, "OTP_SMS_WEBHOOK_SECRET"),
        ({"OTP_HTTP_TIMEOUT_SECONDS": "-1"}, "OTP_HTTP_TIMEOUT_SECONDS"),
        ({"OTP_HTTP_TIMEOUT_SECONDS": "61"}, "OTP_HTTP_TIMEOUT_SECONDS"),
        ({"OTP_HTTP_RETRIES": "6"}, "OTP_HTTP_RETRIES"),
        ({"OTP_HTTP_RETRIES": "1.5"}, "OTP_HTTP_RETRIES"),
        ({"OTP_DEFAULT_LOCALE": "english!"}, "OTP_DEFAULT_LOCALE"),
        ({"OTP_DEFAULT_LOCALE": "e"}, "OTP_DEFAULT_LOCALE"),
        ({"OTP_AUTOFILL_DOMAIN": "example.com:443"}, "OTP_AUTOFILL_DOMAIN"),
        ({"OTP_AUTOFILL_DOMAIN": "https://example.com"}, "OTP_AUTOFILL_DOMAIN"),
    ],
)
def test_bad_value_is_refused_naming_the_variable(environ: dict[str, str], variable: str) -> None:
    """A malformed or out-of-range value is refused even when its provider is not chosen."""
    assert variable in refusal(environ)


@pytest.mark.parametrize(
    ("base", "missing"),
    [
        (SMTP_ENV, "OTP_SMTP_HOST"),
        (SMTP_ENV, "OTP_EMAIL_FROM"),
        (TWILIO_ENV, "OTP_TWILIO_ACCOUNT_SID"),
        (TWILIO_ENV, "OTP_TWILIO_AUTH_TOKEN"),
        (TWILIO_ENV, "OTP_TWILIO_FROM"),
        (WEBHOOK_ENV, "OTP_SMS_WEBHOOK_URL"),
        (WEBHOOK_ENV, "OTP_SMS_WEBHOOK_SECRET"),
    ],
)
def test_chosen_provider_requires_its_values(base: dict[str, str], missing: str) -> None:
    """Choosing a provider without one of its required values is refused naming that value."""
    environ = {name: value for name, value in base.items() if name != missing}
    assert f"{missing} is required" in refusal(environ)


def test_provider_and_its_settings_go_together() -> None:
    """A `DeliveryConfig` built in code cannot choose a provider without its settings."""
    with pytest.raises(ConfigError, match=r"DeliveryConfig\.smtp"):
        DeliveryConfig(email_provider="smtp")
    webhook = WebhookConfig(url="https://sms.example.com", secret=SECRET)
    with pytest.raises(ConfigError, match=r"DeliveryConfig\.webhook"):
        DeliveryConfig(webhook=webhook)
    config = DeliveryConfig(sms_provider="webhook", webhook=webhook)
    assert dataclasses.replace(config, http_retries=2).webhook == webhook
