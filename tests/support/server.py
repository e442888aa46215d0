"""`python -m tests.support.server`: a real server process composed with the tests' own hooks.

Exactly what `python -m otpserver` does (the same command line: settings from the
environment, an ephemeral master key in development, one build before the workers start,
the wait for the store, the metrics listener, then `otpserver.__main__.serve`), with
`tests.support.hooks.HOOKS` in place of `custom/`, so the process tests check the core
whatever a fork does to `custom/`. `tests/custom/` runs `python -m otpserver` itself.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from otpserver import cli
    from otpserver.http.app import OtpApp

# Imports stay inside the functions: with several workers, each worker process first
# imports this module as its main module, and uvicorn's supervisor gives a worker a few
# seconds to answer its first ping; importing the whole server here, before the worker can
# answer, gets workers killed and restarted on a busy machine.


def build() -> OtpApp:
    """The application from the environment and the tests' hooks (each worker runs this)."""
    from otpserver.asgi import configure_logging
    from otpserver.http.app import create_app
    from otpserver.settings.environment import Settings
    from tests.support.hooks import HOOKS

    settings = Settings.from_env()
    configure_logging(settings.operations)
    return create_app(settings, HOOKS)


def application() -> cli.Application:
    """What the command line serves here: the tests' composition."""
    from otpserver import cli

    return cli.Application("tests.support.server:build", build)


if __name__ == "__main__":
    from otpserver import cli
    from otpserver.__main__ import serve

    sys.exit(cli.main(sys.argv[1:], serve, application))
