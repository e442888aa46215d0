"""The composition root: the only place the core meets `custom/`.

Serve with `python -m otpserver`, or any ASGI server in factory mode:
`uvicorn --factory otpserver.asgi:build`.
"""

from __future__ import annotations

from custom import HOOKS
from otpserver.app import OtpApp, create_app
from otpserver.config import Settings


def build() -> OtpApp:
    """The application configured from the environment and the hooks in `custom/`."""
    return create_app(Settings.from_env(), HOOKS)
