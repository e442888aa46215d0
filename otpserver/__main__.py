"""`python -m otpserver`: the command line (`otpserver.cli`), serving with uvicorn by default."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

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
    """
    import uvicorn

    from otpserver.observability.logs import logging_config

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
        # One configuration, applied by uvicorn in the supervisor and in every worker.
        log_config=logging_config(settings.operations.log_format, settings.operations.log_level),
        log_level=settings.operations.log_level.lower(),
    )


if __name__ == "__main__":
    sys.exit(main())
