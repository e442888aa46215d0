"""`python -m otpserver`: check the configuration, then serve with uvicorn."""

from __future__ import annotations

import base64
import importlib.util
import logging
import os
import resource
import sys

import uvicorn

from otpserver.errors import ConfigError
from otpserver.http.guard import PROTOCOL, GuardedHttpToolsProtocol
from otpserver.http.hosts import exposure_warning
from otpserver.settings.environment import MASTER_KEY_BYTES, Settings


def main() -> int:
    """Start the server, or print one line per configuration problem and exit with 2."""
    try:
        # Imported here, inside the error handling, because importing it loads `custom/`.
        from otpserver import asgi

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
        for problem in error.problems:
            print(f"otpserver: configuration error: {problem}", file=sys.stderr)
        return 2
    serve("otpserver.asgi:build", settings)
    return 0


def serve(
    factory: str,
    settings: Settings,
    *,
    http: str = "auto",
    loop: str = "auto",
    access_log: bool = False,
) -> None:
    """Serve the ASGI application factory `factory` (`module:function`) until stopped.

    The one place the server stack and its settings are chosen; the benchmark serves its
    bare ceiling endpoint through it too, so the two are always compared like for like.
    uvicorn picks httptools and uvloop (installed with `uvicorn[standard]`): the fastest
    stack measured on one core (docs/BENCHMARKS.md). No access log: production runs behind
    the TLS-terminating proxy that keeps one, and writing a line per request here costs
    about as much CPU as serving a bare request (a 100-microsecond toll on every call).
    The keyword options exist for the benchmark's comparison of uvicorn's alternatives.

    `http="auto"` serves through `otpserver.http.guard`, httptools with the bounds of
    `settings.server` (request deadline, request-head sizes, connections per worker); the
    soft limit on open files is raised to the hard one first, so the connection cap, not
    the file limit, is what a flood of sockets meets.
    """
    limits = settings.server
    warning = exposure_warning(settings)
    if warning is not None:
        logging.getLogger("otpserver").warning(warning)
    if http == "auto" and importlib.util.find_spec("httptools") is not None:
        GuardedHttpToolsProtocol.limits = limits
        http = PROTOCOL
    raise_open_file_limit()
    uvicorn.run(
        factory,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        http=http,
        loop=loop,
        proxy_headers=False,
        server_header=False,
        access_log=access_log,
        log_level="info",
        timeout_keep_alive=limits.keep_alive_seconds,
        # Only the h11 implementation reads this; the guarded httptools one has its own.
        h11_max_incomplete_event_size=limits.max_header_bytes,
    )


def raise_open_file_limit() -> None:
    """Raise this process's soft limit on open files to its hard limit (where it has one)."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        logging.getLogger("otpserver").warning("could not raise the open-file limit")


if __name__ == "__main__":
    sys.exit(main())
