"""The composition root: the only place the core meets `custom/`.

Serve with `python -m otpserver`, or any ASGI server in factory mode:
`uvicorn --factory --no-proxy-headers otpserver.asgi:build` (client addresses come
from `OTP_TRUSTED_PROXIES`, never from the server's own proxy-header rewriting).
"""

from __future__ import annotations

import logging

from custom import HOOKS
from otpserver.http.app import OtpApp, create_app
from otpserver.settings.environment import Settings

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def configure_logging() -> None:
    """The server's log setup, in every process that serves: with `OTP_WORKERS` > 1 each
    worker is a fresh interpreter that runs `build`, not `python -m otpserver`'s `main`.

    Leaves an already configured root logger alone (an embedding application's, or a test
    runner's), but always quiets httpx: it logs every request's full URL at INFO, and a
    provider URL may carry a token in its query (OTP_SMS_WEBHOOK_URL allows one); the
    senders log their own failures safely.
    """
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def build() -> OtpApp:
    """The application configured from the environment and the hooks in `custom/`."""
    configure_logging()
    return create_app(Settings.from_env(), HOOKS)
