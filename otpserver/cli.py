"""The command line: `serve` (the default), `check`, and the tools for keys and the store.

`python -m otpserver --help` lists every command; `python -m otpserver COMMAND --help`
explains one. Each command is a function taking the parsed arguments and returning the
exit status: 0 done, 1 the command ran and found a problem, 2 bad configuration or usage.

A command is added with `commands.add_parser(...)` and `set_defaults(run=...)` in
`build_parser`; a family of commands (`keys ...`) hangs under `command_group`.
"""

from __future__ import annotations

import argparse
import base64
import functools
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from otpserver import asgi
from otpserver.errors import ConfigError
from otpserver.settings.environment import MASTER_KEY_BYTES, Settings

Serve = Callable[[str, Settings], None]
"""Starts the server for an ASGI factory (`module:function`) and blocks until it stops."""

Command = Callable[[argparse.Namespace], int]

PROG = "python -m otpserver"

_DESCRIPTION = """\
A stateless one-time-password server. Every setting comes from the environment
(OTP_* variables, see sample.env); with no command, `serve` runs."""

_EPILOG = """\
exit status: 0 done, 1 the command found a problem, 2 bad configuration or usage.
Every configuration problem is reported at once, each line naming its variable."""


def build_parser(serve: Serve) -> argparse.ArgumentParser:
    """The whole command tree; `serve` is what the `serve` command calls to start uvicorn."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(run=functools.partial(run_serve, serve=serve))
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    serve_parser = commands.add_parser(
        "serve",
        help="check the configuration, then serve HTTP with uvicorn (the default)",
        description=(
            "Check the configuration, wait for the store to answer, then serve on "
            "OTP_HOST:OTP_PORT with OTP_WORKERS worker processes. In development "
            "(OTP_ENV=development) without OTP_MASTER_KEY, an ephemeral master key is made."
        ),
    )
    serve_parser.set_defaults(run=functools.partial(run_serve, serve=serve))

    check_parser = commands.add_parser(
        "check",
        help="validate the configuration without serving, reporting every problem at once",
        description=(
            "Read every OTP_* variable and build the application exactly as `serve` would, "
            "without listening: every configuration problem is printed, one line each. "
            "Exit status 0 when the configuration is valid, 2 when it is not."
        ),
    )
    check_parser.set_defaults(run=run_check)
    return parser


def command_group(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """A command family such as `keys`: `python -m otpserver keys` alone prints its help."""
    group = commands.add_parser(name, help=help_text, description=help_text)
    group.set_defaults(run=functools.partial(_print_help, group))
    return group.add_subparsers(title=f"{name} commands", metavar="COMMAND")


def main(argv: Sequence[str], serve: Serve) -> int:
    """Run the command `argv` names (without the program name); return the exit status."""
    args = build_parser(serve).parse_args(list(argv))
    run: Command = args.run
    return run(args)


def report_config_error(error: ConfigError, stream: TextIO | None = None) -> int:
    """Print a configuration error, one line per problem, and return exit status 2."""
    out = sys.stderr if stream is None else stream
    for line in str(error).splitlines() or [""]:
        print(f"otpserver: configuration error: {line}", file=out)
    return 2


def run_serve(args: argparse.Namespace, *, serve: Serve) -> int:
    """Check the configuration and hooks in this process, then hand over to `serve`."""
    try:
        asgi.configure_logging()
        settings = Settings.from_env()
        ephemeral = settings.is_development and settings.master_key is None
        if ephemeral:
            # Every worker must seal with the same keys, so the ephemeral key is made once
            # here and inherited through the environment; it is never printed.
            os.environ["OTP_MASTER_KEY"] = (
                base64.urlsafe_b64encode(os.urandom(MASTER_KEY_BYTES)).rstrip(b"=").decode()
            )
        # Build once in this process so bad hooks or settings fail before any worker starts.
        asgi.build()
        if ephemeral:
            logging.getLogger("otpserver").warning(
                "development mode: generated an ephemeral OTP_MASTER_KEY; cookies die on restart"
            )
    except ConfigError as error:
        return report_config_error(error)
    serve("otpserver.asgi:build", settings)
    return 0


def run_check(args: argparse.Namespace) -> int:
    """Build the application from the environment without serving; report what is wrong."""
    try:
        settings = Settings.from_env()
        asgi.build()
    except ConfigError as error:
        return report_config_error(error)
    print(
        f"otpserver: configuration OK (OTP_ENV={settings.env}, "
        f"store {settings.store_url.partition(':')[0]}, {settings.workers} worker(s))"
    )
    return 0


def _print_help(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    parser.print_help()
    return 2
