"""The composition root: the only place the core meets `custom/`.

Serve with `python -m otpserver`, or any ASGI server in factory mode:
`uvicorn --factory --no-proxy-headers otpserver.asgi:build` (client addresses come
from `OTP_TRUSTED_PROXIES`, never from the server's own proxy-header rewriting).
"""

from __future__ import annotations

from custom import HOOKS
from otpserver.http.app import OtpApp, create_app
from otpserver.observability import logs
from otpserver.settings.environment import Settings
from otpserver.settings.operations import OperationsConfig


def configure_logging(operations: OperationsConfig | None = None) -> None:
    """The server's log setup, in every process that serves: with `OTP_WORKERS` > 1 each
    worker is a fresh interpreter that runs `build`, not `python -m otpserver`'s `main`.

    `python -m otpserver` applies the same configuration through uvicorn's `log_config`,
    in the supervisor and in every worker; another server (gunicorn, granian, uvicorn run
    by hand) gets it here. An already configured root logger (an embedding application's,
    or a test runner's) is left alone, except that httpx is always held to warnings: it
    logs every request's full URL, and a provider URL may carry a token in its query.
    """
    chosen = operations or OperationsConfig()
    logs.configure_logging(chosen.log_format, chosen.log_level)


def build() -> OtpApp:
    """The application configured from the environment and the hooks in `custom/`."""
    settings = Settings.from_env()
    configure_logging(settings.operations)
    return create_app(settings, HOOKS)
