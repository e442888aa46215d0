"""The command line: `serve` (the default), `check`, and the tools for keys and the store.

`python -m otpserver --help` lists every command; `python -m otpserver COMMAND --help`
explains one. Each command is a function taking the parsed arguments and returning the
exit status: 0 done, 1 the command ran and found a problem, 2 bad configuration or usage.

A command is added with `commands.add_parser(...)` and `set_defaults(run=...)` in
`build_parser`; a family of commands (`keys ...`) hangs under `command_group`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from pydantic import ValidationError
from redis.exceptions import RedisError

from otpserver import asgi
from otpserver.errors import ConfigError, StoreUnavailable
from otpserver.http.app import OtpApp
from otpserver.http.health import Readiness
from otpserver.observability import logs, metrics, outage
from otpserver.settings.environment import MASTER_KEY_BYTES, Settings
from otpserver.stores import redis as redis_store
from otpserver.stores.clients import redis_client
from otpserver.v1 import admin

Serve = Callable[[str, Settings], None]
"""Starts the server for an ASGI factory (`module:function`) and blocks until it stops."""

Command = Callable[[argparse.Namespace], int]


@dataclass(frozen=True, slots=True)
class Application:
    """What the commands serve and check: `build` makes the app in this process, and
    `factory` (`module:function`) names the same builder for each worker to import."""

    factory: str
    build: Callable[[], OtpApp]


def shipped_application() -> Application:
    """The application composed with `custom/` (`otpserver.asgi`)."""
    return Application("otpserver.asgi:build", asgi.build)


PROG = "python -m otpserver"

log = logging.getLogger("otpserver")

_DESCRIPTION = """\
A stateless one-time-password server. Every setting comes from the environment
(OTP_* variables, see sample.env); with no command, `serve` runs."""

_EPILOG = """\
exit status: 0 done, 1 the command found a problem, 2 bad configuration or usage.
Every configuration problem is reported at once, each line naming its variable."""


def build_parser(
    serve: Serve, application: Callable[[], Application] = shipped_application
) -> argparse.ArgumentParser:
    """The whole command tree; `serve` is what the `serve` command calls to start uvicorn,
    and `application` gives what `serve` and `check` build."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(run=functools.partial(run_serve, serve=serve, application=application))
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
    serve_parser.set_defaults(
        run=functools.partial(run_serve, serve=serve, application=application)
    )

    check_parser = commands.add_parser(
        "check",
        help="validate the configuration without serving, reporting every problem at once",
        description=(
            "Read every OTP_* variable and build the application exactly as `serve` would, "
            "without listening: every configuration problem is printed, one line each. "
            "Exit status 0 when the configuration is valid, 2 when it is not."
        ),
    )
    check_parser.add_argument(
        "--store",
        action="store_true",
        help=(
            "also ask the store once and load the current key, as /health/ready does; "
            "exit status 1 when it does not answer"
        ),
    )
    check_parser.set_defaults(run=functools.partial(run_check, application=application))

    apikey_commands = command_group(
        commands, "apikey", "make API keys for the server-to-server API (/v1)"
    )
    new_parser = apikey_commands.add_parser(
        "new",
        help="print a fresh API key once, and the OTP_API_KEYS entry that admits it",
        description=(
            "Print a fresh otpk_<id>_<secret> key (shown once, kept nowhere) and the "
            "id:sha256:scopes entry to add to OTP_API_KEYS. To rotate a client's key, add the "
            "new entry beside the old one, switch the client, then remove the old entry."
        ),
    )
    new_parser.add_argument(
        "--id", required=True, help="the client's id: 4-32 of a-z, 0-9 (the aud of its results)"
    )
    new_parser.add_argument(
        "--scopes",
        required=True,
        help="comma or + separated: challenges, totp, backup_codes, devices, forward_ip",
    )
    new_parser.set_defaults(run=run_apikey_new)

    keys_commands = command_group(commands, "keys", "inspect the server's keys")
    status_parser = keys_commands.add_parser(
        "status",
        help="show master-key fingerprints, the KEKs in the store and the signing key ids",
        description=(
            "Show the key ring without revealing a key: fingerprints of OTP_MASTER_KEY and "
            "OTP_MASTER_KEY_PREVIOUS, each KEK epoch in the store with the master key that "
            "opens it, and the JWKS key ids of the result-signing keys. Exit status 1 when a "
            "stored KEK opens with no configured master key."
        ),
    )
    status_parser.set_defaults(run=run_keys_status)

    unlock_parser = commands.add_parser(
        "unlock",
        help="clear a credential's consecutive wrong codes, lifting its lockout and failure cap",
        description=(
            "Clear both failure counts of one credential (the short lockout's and the long "
            "cap's, OTP_LIMIT_FAILURE_CAP), as a correct code would. Use it once the owner has "
            "proved who they are some other way. The address is normalised as the server does "
            "it, so any spelling of the mailbox works. Needs the shared store (redis://): the "
            "memory store lives inside the server process, which only a restart clears."
        ),
    )
    unlock_parser.add_argument("channel", help="the credential's field, e.g. email or phone")
    unlock_parser.add_argument("address", help="the address, as a user would type it")
    unlock_parser.set_defaults(run=functools.partial(run_unlock, application=application))
    revoke_parser = keys_commands.add_parser(
        "revoke-pending",
        help="make every pending cookie and token invalid (the step after restoring Redis)",
        description=(
            "Delete every single-use ID and every key-encryption key in the Redis store and "
            "move its sequence ahead, so that no cookie or challenge token issued before "
            "works again: users ask for a new code. Run it after restoring a snapshot or "
            "promoting a replica that may have missed writes (README: Redis: high "
            "availability, backups and restores). Signed results, API keys and sealed blobs "
            "(TOTP, backup codes, devices) are not affected."
        ),
    )
    revoke_parser.set_defaults(run=run_keys_revoke_pending)
    return parser


def command_group(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """A command family such as `keys`: `python -m otpserver keys` alone prints its help."""
    group = commands.add_parser(name, help=help_text, description=help_text)
    group.set_defaults(run=functools.partial(_print_help, group))
    return group.add_subparsers(title=f"{name} commands", metavar="COMMAND")


def main(
    argv: Sequence[str], serve: Serve, application: Callable[[], Application] = shipped_application
) -> int:
    """Run the command `argv` names (without the program name); return the exit status."""
    args = build_parser(serve, application).parse_args(list(argv))
    run: Command = args.run
    return run(args)


def report_config_error(error: ConfigError, stream: TextIO | None = None) -> int:
    """Print a configuration error, one line per problem, and return exit status 2."""
    out = sys.stderr if stream is None else stream
    for problem in error.problems:
        print(f"otpserver: configuration error: {problem}", file=out)
    return 2


def run_serve(
    args: argparse.Namespace, *, serve: Serve, application: Callable[[], Application]
) -> int:
    """Check the configuration and hooks in this process, wait for the store, start the
    metrics listener, then hand over to `serve`."""
    # Before the `try`: a configuration error can come before the listener is made.
    listener: metrics.Listener | None = None
    try:
        settings = Settings.from_env()
        logs.configure_logging(settings.operations.log_format, settings.operations.log_level)
        ephemeral = settings.is_development and settings.master_key is None
        if ephemeral:
            # Every worker must seal with the same keys, so the ephemeral key is made once
            # here and inherited through the environment; it is never printed.
            os.environ["OTP_MASTER_KEY"] = (
                base64.urlsafe_b64encode(os.urandom(MASTER_KEY_BYTES)).rstrip(b"=").decode()
            )
        if settings.operations.metrics_port is not None:
            # Before the app is built, so this process and every worker count in files.
            listener = metrics.Listener(
                settings.operations.metrics_host, settings.operations.metrics_port
            )
            try:
                listener.open()
            except OSError as error:
                listener.close()
                print(
                    f"otpserver: cannot serve metrics on {listener.host}:{listener.port} "
                    f"(OTP_METRICS_HOST, OTP_METRICS_PORT): {error.strerror or error}",
                    file=sys.stderr,
                )
                return 1
            log.info("metrics on http://%s:%d/metrics", listener.host, listener.port)
        # Build once in this process so bad hooks or settings fail before any worker starts.
        chosen = application()
        app = chosen.build()
        if ephemeral:
            log.warning(
                "development mode: generated an ephemeral OTP_MASTER_KEY; cookies die on restart"
            )
    except ConfigError as error:
        if listener is not None:
            listener.close()
        return report_config_error(error)
    try:
        wait_seconds = settings.operations.store_wait_seconds
        if not asyncio.run(wait_for_store(app, wait_seconds)):
            print(
                f"otpserver: the store did not answer within {wait_seconds:g} s "
                f"(OTP_STORE_WAIT_SECONDS): {outage.STORE.last_error or 'no answer'}",
                file=sys.stderr,
            )
            return 1
        try:
            asyncio.run(redis_store.check_store(settings))
        except ConfigError as error:
            return report_config_error(error)
        serve(chosen.factory, settings)
    finally:
        if listener is not None:
            listener.close()
    return 0


async def wait_for_store(app: OtpApp, wait_seconds: float, *, pause_seconds: float = 0.5) -> bool:
    """True once the application is ready (store answering, keys loading); False when it
    is still not after `wait_seconds`. A store that is not up yet is waited for, saying so
    once, so a server started alongside its store does not fail for arriving first."""
    readiness: Readiness = app.state.readiness
    async with app.router.lifespan_context(app):
        started = time.monotonic()
        problem = await readiness.problem()
        if problem is None:
            return True
        log.warning(
            "store not ready (%s); waiting up to %g s for it (OTP_STORE_WAIT_SECONDS)",
            problem,
            wait_seconds,
        )
        while time.monotonic() - started < wait_seconds:
            await asyncio.sleep(pause_seconds)
            if await readiness.problem() is None:
                log.info("store ready after %.1f s", time.monotonic() - started)
                return True
        return False


def run_check(args: argparse.Namespace, *, application: Callable[[], Application]) -> int:
    """Build the application from the environment without serving; report what is wrong."""
    try:
        settings = Settings.from_env()
        app = application().build()
    except ConfigError as error:
        return report_config_error(error)
    print(
        f"otpserver: configuration OK (OTP_ENV={settings.env}, "
        f"store {settings.store_url.partition(':')[0]}, {settings.workers} worker(s))"
    )
    if args.store:
        problem = asyncio.run(_probe_once(app))
        if problem is not None:
            print(
                f"otpserver: the store is not ready ({problem}): "
                f"{outage.STORE.last_error or 'no answer'}",
                file=sys.stderr,
            )
            return 1
        print("otpserver: store ready")
    return 0


async def _probe_once(app: OtpApp) -> str | None:
    readiness: Readiness = app.state.readiness
    async with app.router.lifespan_context(app):
        return await readiness.problem()


def run_apikey_new(args: argparse.Namespace) -> int:
    """Print a new API key and its configuration entry."""
    scopes = [s for s in str(args.scopes).replace("+", ",").split(",") if s.strip()]
    try:
        lines = admin.new_key_lines(str(args.id), [s.strip() for s in scopes])
    except ValueError as error:
        print(f"otpserver: apikey new: {error}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


def run_keys_status(args: argparse.Namespace) -> int:
    """Print the key ring as the configuration and the store have it."""
    try:
        settings = Settings.from_env()
        app = asgi.build()
    except ConfigError as error:
        return report_config_error(error)
    if settings.master_key is None:
        print("otpserver: keys status: OTP_MASTER_KEY is not set", file=sys.stderr)
        return 2

    async def status() -> list[str]:
        async with app.router.lifespan_context(app):
            return await admin.ring_status(
                settings.master_key or b"",
                settings.api,
                app.state.keyring,
                app.state.results,
                time.time(),
            )

    try:
        lines = asyncio.run(status())
    except StoreUnavailable:
        print("otpserver: keys status: the store did not answer", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 1 if any("no configured master key" in line for line in lines) else 0


def run_unlock(args: argparse.Namespace, *, application: Callable[[], Application]) -> int:
    """Clear one credential's failure counts in the shared store."""
    try:
        settings = Settings.from_env()
        app = application().build()
    except ConfigError as error:
        return report_config_error(error)
    if settings.uses_memory_store:
        print(
            "otpserver: unlock: the memory store lives in the server process; restarting the "
            "server clears every count",
            file=sys.stderr,
        )
        return 1
    try:
        body = app.state.endpoints.credential_body.model_validate({args.channel: args.address})
    except ValidationError:
        print(f"otpserver: unlock: not a valid {args.channel} credential", file=sys.stderr)
        return 2
    credential = body.credential()

    async def unlock() -> None:
        async with app.router.lifespan_context(app):
            await app.state.verifications.limiter.forget_failures(credential)

    try:
        asyncio.run(unlock())
    except StoreUnavailable:
        print("otpserver: unlock: the store did not answer", file=sys.stderr)
        return 1
    # The address is not echoed: the operator typed it, and output may end up in a log.
    print(f"otpserver: unlock: cleared the failure counts of that {credential.channel} credential")
    return 0


def run_keys_revoke_pending(args: argparse.Namespace) -> int:
    """Revoke every pending cookie and token in the Redis store."""
    try:
        settings = Settings.from_env()
    except ConfigError as error:
        return report_config_error(error)
    if settings.uses_memory_store:
        print(
            "otpserver: keys revoke-pending: memory:// keeps nothing across a restart; "
            "restarting the server already revoked everything pending",
            file=sys.stderr,
        )
        return 2

    async def revoke() -> redis_store.Revoked:
        client = redis_client(settings.store_url, settings.store_timeout_seconds)
        try:
            return await redis_store.revoke_pending(client)
        finally:
            await client.aclose()

    try:
        revoked = asyncio.run(revoke())
    except (RedisError, OSError) as error:
        print(
            f"otpserver: keys revoke-pending: no answer from the store ({error})", file=sys.stderr
        )
        return 1
    print(
        f"otpserver: revoked {revoked.ids} pending ID(s) and {revoked.keys} key(s); "
        f"store sequence now {revoked.sequence}"
    )
    return 0


def _print_help(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    parser.print_help()
    return 2
