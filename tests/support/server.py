"""`python -m tests.support.server`: a real server process composed with the tests' own hooks.

What `python -m otpserver` does (settings from the environment, an ephemeral master key in
development, one build before the workers start, then `otpserver.__main__.serve`), with
`tests.support.hooks.HOOKS` in place of `custom/`, so the process tests check the core
whatever a fork does to `custom/`. `tests/custom/` runs `python -m otpserver` itself.
"""

from __future__ import annotations

import base64
import os
import sys

from otpserver.__main__ import serve
from otpserver.asgi import configure_logging
from otpserver.errors import ConfigError
from otpserver.http.app import OtpApp, create_app
from otpserver.settings.environment import MASTER_KEY_BYTES, Settings
from tests.support.hooks import HOOKS


def build() -> OtpApp:
    """The application from the environment and the tests' hooks (each worker runs this)."""
    configure_logging()
    return create_app(Settings.from_env(), HOOKS)


def main() -> int:
    try:
        configure_logging()
        settings = Settings.from_env()
        if settings.is_development and settings.master_key is None:
            os.environ["OTP_MASTER_KEY"] = (
                base64.urlsafe_b64encode(os.urandom(MASTER_KEY_BYTES)).rstrip(b"=").decode()
            )
        build()
    except ConfigError as error:
        for problem in error.problems:
            print(f"otpserver: configuration error: {problem}", file=sys.stderr)
        return 2
    serve("tests.support.server:build", settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
