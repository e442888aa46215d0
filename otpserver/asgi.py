"""The composition root: the only place the core meets `custom/`.

Serve with `python -m otpserver`, or any ASGI server in factory mode:
`uvicorn --factory --no-proxy-headers otpserver.asgi:build` (client addresses come
from `OTP_TRUSTED_PROXIES`, never from the server's own proxy-header rewriting).
"""

from __future__ import annotations

from custom import HOOKS
from otpserver.app import OtpApp, create_app
from otpserver.config import Settings


def build() -> OtpApp:
    """The application configured from the environment and the hooks in `custom/`."""
    return create_app(Settings.from_env(), HOOKS)
