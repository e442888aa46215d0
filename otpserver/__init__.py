"""otpserver: a stateless, encrypted-cookie one-time-password server.

The core never imports `custom/`; `otpserver.asgi` is the one place they meet.
"""

from __future__ import annotations

from otpserver.delivery.message import DeliveryError, OutgoingCode, Sender
from otpserver.errors import ConfigError, OtpError
from otpserver.hooks import Hooks, VerifiedCredential
from otpserver.http.app import create_app
from otpserver.otp.addresses import (
    EmailAddress,
    PhoneNumber,
    normalize_email,
    normalize_phone,
)
from otpserver.otp.credentials import Credential, CredentialBody
from otpserver.otp.policy import OtpPolicy
from otpserver.settings.environment import Settings
from otpserver.stores.base import IdStore, KeyStore

__all__ = [
    "ConfigError",
    "Credential",
    "CredentialBody",
    "DeliveryError",
    "EmailAddress",
    "Hooks",
    "IdStore",
    "KeyStore",
    "OtpError",
    "OtpPolicy",
    "OutgoingCode",
    "PhoneNumber",
    "Sender",
    "Settings",
    "VerifiedCredential",
    "create_app",
    "normalize_email",
    "normalize_phone",
]
