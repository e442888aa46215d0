"""otpserver: a stateless, encrypted-cookie one-time-password server.

This module is the public API: everything `custom/` (the hooks a fork edits) may import is
named in `__all__`, and a test holds `custom/` to it. Importing it is light: each name is
loaded the first time it is used, so `import otpserver` builds no app, opens no store and
never imports `custom/` (`otpserver.asgi` is the one place the core meets `custom/`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from otpserver.delivery import (
        ChannelSender,
        SmtpSender,
        Templates,
        TwilioSmsSender,
        WebhookSmsSender,
        build_sender,
        verify_webhook_signature,
    )
    from otpserver.delivery.message import DeliveryError, OutgoingCode, Sender
    from otpserver.errors import ConfigError, OtpError, StoreUnavailable
    from otpserver.hooks import Hooks, JSONResponse, VerifiedCredential
    from otpserver.http.app import create_app
    from otpserver.limits.rules import LimitPolicy
    from otpserver.otp.addresses import EmailAddress, PhoneNumber, normalize_email, normalize_phone
    from otpserver.otp.codes import random_code
    from otpserver.otp.credentials import Credential, CredentialBody
    from otpserver.otp.policy import OtpPolicy
    from otpserver.settings.environment import Settings
    from otpserver.stores import (
        MemoryCounterStore,
        MemoryIdStore,
        MemoryKeyStore,
        MemoryMarkerStore,
        RedisCounterStore,
        RedisIdStore,
        RedisKeyStore,
        RedisMarkerStore,
        redis_client,
    )
    from otpserver.stores.base import CounterStore, IdStore, KeyStore, MarkerStore

_HOMES: dict[str, str] = {
    "ChannelSender": "otpserver.delivery",
    "ConfigError": "otpserver.errors",
    "CounterStore": "otpserver.stores.base",
    "Credential": "otpserver.otp.credentials",
    "CredentialBody": "otpserver.otp.credentials",
    "DeliveryError": "otpserver.delivery.message",
    "EmailAddress": "otpserver.otp.addresses",
    "Hooks": "otpserver.hooks",
    "IdStore": "otpserver.stores.base",
    "JSONResponse": "otpserver.hooks",
    "KeyStore": "otpserver.stores.base",
    "LimitPolicy": "otpserver.limits.rules",
    "MemoryCounterStore": "otpserver.stores",
    "MemoryIdStore": "otpserver.stores",
    "MarkerStore": "otpserver.stores.base",
    "MemoryKeyStore": "otpserver.stores",
    "MemoryMarkerStore": "otpserver.stores",
    "OtpError": "otpserver.errors",
    "OtpPolicy": "otpserver.otp.policy",
    "OutgoingCode": "otpserver.delivery.message",
    "PhoneNumber": "otpserver.otp.addresses",
    "RedisCounterStore": "otpserver.stores",
    "RedisIdStore": "otpserver.stores",
    "RedisKeyStore": "otpserver.stores",
    "RedisMarkerStore": "otpserver.stores",
    "Sender": "otpserver.delivery.message",
    "Settings": "otpserver.settings.environment",
    "SmtpSender": "otpserver.delivery",
    "StoreUnavailable": "otpserver.errors",
    "Templates": "otpserver.delivery",
    "TwilioSmsSender": "otpserver.delivery",
    "VerifiedCredential": "otpserver.hooks",
    "WebhookSmsSender": "otpserver.delivery",
    "build_sender": "otpserver.delivery",
    "create_app": "otpserver.http.app",
    "normalize_email": "otpserver.otp.addresses",
    "normalize_phone": "otpserver.otp.addresses",
    "random_code": "otpserver.otp.codes",
    "redis_client": "otpserver.stores",
    "verify_webhook_signature": "otpserver.delivery",
}
"""Public name -> the module that defines it."""

__all__ = [
    "ChannelSender",
    "ConfigError",
    "CounterStore",
    "Credential",
    "CredentialBody",
    "DeliveryError",
    "EmailAddress",
    "Hooks",
    "IdStore",
    "JSONResponse",
    "KeyStore",
    "LimitPolicy",
    "MarkerStore",
    "MemoryCounterStore",
    "MemoryIdStore",
    "MemoryKeyStore",
    "MemoryMarkerStore",
    "OtpError",
    "OtpPolicy",
    "OutgoingCode",
    "PhoneNumber",
    "RedisCounterStore",
    "RedisIdStore",
    "RedisKeyStore",
    "RedisMarkerStore",
    "Sender",
    "Settings",
    "SmtpSender",
    "StoreUnavailable",
    "Templates",
    "TwilioSmsSender",
    "VerifiedCredential",
    "WebhookSmsSender",
    "build_sender",
    "create_app",
    "normalize_email",
    "normalize_phone",
    "random_code",
    "redis_client",
    "verify_webhook_signature",
]


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use (PEP 562), and keep it here."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'otpserver' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
