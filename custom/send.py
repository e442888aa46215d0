"""Edit this file to choose how codes are delivered (interim: development console only)."""

from __future__ import annotations

from otpserver.config import Settings
from otpserver.delivery.console import ConsoleSender
from otpserver.hooks import Sender


def make_sender(settings: Settings) -> Sender:
    """The console sender; refused in production by the core."""
    return ConsoleSender()
