"""otpserver: a stateless, encrypted-cookie one-time-password server.

The core never imports `custom/`; `otpserver.asgi` is the one place they meet.
"""

from __future__ import annotations

from otpserver.app import create_app
from otpserver.config import Settings
from otpserver.errors import ConfigError, OtpError
from otpserver.hooks import (
    Credential,
    CredentialBody,
    DeliveryError,
    Hooks,
    IdStore,
    KeyStore,
    OutgoingCode,
    Sender,
    VerifiedCredential,
)
from otpserver.policy import OtpPolicy

__all__ = [
    "ConfigError",
    "Credential",
    "CredentialBody",
    "DeliveryError",
    "Hooks",
    "IdStore",
    "KeyStore",
    "OtpError",
    "OtpPolicy",
    "OutgoingCode",
    "Sender",
    "Settings",
    "VerifiedCredential",
    "create_app",
]
