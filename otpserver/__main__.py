"""`python -m otpserver`: the command line (`otpserver.cli`), serving with uvicorn by default."""

from __future__ import annotations

import importlib.util
import logging
import resource
import sys
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from otpserver.settings.environment import Settings

# Nothing heavy is imported at the top: with several workers, each worker process first
# imports this module as its main module, and uvicorn's supervisor kills a worker that does
# not answer its first ping within a few seconds (as on a busy machine, importing the whole
# server before the worker can answer).


def main() -> int:
    """Run the command line with this module's `serve`; return the exit status."""
    # Imported here so `serve` stays importable (by the benchmark) without loading `custom/`.
    from otpserver import cli

    return cli.main(sys.argv[1:], serve)


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

    With `settings.workers` above one, each worker listens on the port with a socket of its
    own (`otpserver.http.workers`), so the kernel spreads connections over them; a port
    already taken stops start-up with exit status 1. Where the platform cannot share a
    port that way, uvicorn's multiprocess mode (one socket for all workers) serves instead.
    """
    import uvicorn

    from otpserver.http import workers
    from otpserver.http.guard import PROTOCOL, GuardedHttpToolsProtocol
    from otpserver.http.hosts import exposure_warning

    limits = settings.server
    warning = exposure_warning(settings)
    if warning is not None:
        logging.getLogger("otpserver").warning(warning)
    if http == "auto" and importlib.util.find_spec("httptools") is not None:
        GuardedHttpToolsProtocol.limits = limits
        http = PROTOCOL
    raise_open_file_limit()
    options = uvicorn_options(settings, http=http, loop=loop, access_log=access_log)
    if settings.workers == 1:
        uvicorn.run(factory, factory=True, workers=1, **options)
        return
    if not workers.SHARES_PORT:
        logging.getLogger("otpserver").warning(
            "this platform has no SO_REUSEPORT: the %d workers share one listening socket "
            "(uvicorn's multiprocess mode), and connections may gather on one of them",
            settings.workers,
        )
        uvicorn.run(factory, factory=True, workers=settings.workers, **options)
        return
    try:
        port = workers.claim_port(settings.host, settings.port)
    except OSError as error:
        print(
            f"otpserver: cannot listen on {settings.host}:{settings.port} "
            f"(OTP_HOST, OTP_PORT): {error.strerror or error}",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
    options["port"] = port
    # Each worker is one uvicorn server on its own socket: a worker count of one to uvicorn.
    config = uvicorn.Config(factory, factory=True, workers=1, **options)
    supervisor = workers.Supervisor(
        config, settings.workers, silent_after_seconds=settings.worker_timeout_seconds
    )
    status = supervisor.run()
    if status != 0:
        raise SystemExit(status)


class UvicornOptions(TypedDict):
    """What every uvicorn server of ours is given, with one worker or several."""

    host: str
    port: int
    http: str
    loop: str
    proxy_headers: bool
    server_header: bool
    access_log: bool
    log_config: dict[str, Any]
    log_level: str
    timeout_keep_alive: int
    h11_max_incomplete_event_size: int


def uvicorn_options(
    settings: Settings, *, http: str, loop: str, access_log: bool
) -> UvicornOptions:
    """uvicorn's options for `settings`: the single-worker and the multi-worker paths both
    take them from here, so the two serve alike."""
    from otpserver.observability.logs import logging_config

    limits = settings.server
    return UvicornOptions(
        host=settings.host,
        port=settings.port,
        http=http,
        loop=loop,
        proxy_headers=False,
        server_header=False,
        access_log=access_log,
        # One configuration, applied in the supervisor and in every worker.
        log_config=logging_config(settings.operations.log_format, settings.operations.log_level),
        log_level=settings.operations.log_level.lower(),
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
