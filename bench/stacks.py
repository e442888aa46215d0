"""The server stacks compared side by side: what `python -m otpserver` runs, and alternatives.

Every stack serves an ASGI factory with the same host, port and worker count from the
`OTP_*` settings, never rewrites client addresses from proxy headers, and keeps the access
log as stated in its description.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from otpserver.__main__ import serve as serve_default
from otpserver.settings.environment import Settings

Serve = Callable[[str, Settings], None]


@dataclass(frozen=True, slots=True)
class Stack:
    """A named way to serve an ASGI factory."""

    description: str
    serve: Serve


def uvicorn_stack(http: str, loop: str, *, access_log: bool) -> Serve:
    """The default's uvicorn settings with an explicit HTTP parser and event loop."""

    def serve(factory: str, settings: Settings) -> None:
        serve_default(factory, settings, http=http, loop=loop, access_log=access_log)

    return serve


def granian_stack(loop: str, task_impl: str = "asyncio", runtime_mode: str = "st") -> Serve:
    """granian (Rust HTTP/1.1 front end) with an event loop, task implementation and runtime."""

    def serve(factory: str, settings: Settings) -> None:
        from granian import Granian
        from granian.constants import HTTPModes, Interfaces, Loops, RuntimeModes, TaskImpl

        Granian(
            factory,
            address=settings.host,
            port=settings.port,
            interface=Interfaces.ASGI,
            factory=True,
            workers=settings.workers,
            http=HTTPModes.http1,
            loop=Loops(loop),
            task_impl=TaskImpl(task_impl),
            runtime_mode=RuntimeModes(runtime_mode),
            log_access=False,
        ).serve()

    return serve


STACKS: dict[str, Stack] = {
    "default": Stack("what `python -m otpserver` runs", serve_default),
    "uvicorn-httptools-uvloop-log": Stack(
        "uvicorn, httptools, uvloop, access log on (the original default)",
        uvicorn_stack("httptools", "uvloop", access_log=True),
    ),
    "uvicorn-httptools-uvloop": Stack(
        "uvicorn, httptools parser, uvloop, no access log",
        uvicorn_stack("httptools", "uvloop", access_log=False),
    ),
    "uvicorn-httptools-asyncio": Stack(
        "uvicorn, httptools parser, asyncio loop, no access log",
        uvicorn_stack("httptools", "asyncio", access_log=False),
    ),
    "uvicorn-h11-uvloop": Stack(
        "uvicorn, h11 (pure Python) parser, uvloop, no access log",
        uvicorn_stack("h11", "uvloop", access_log=False),
    ),
    "uvicorn-h11-asyncio": Stack(
        "uvicorn, h11 parser, asyncio loop, no access log",
        uvicorn_stack("h11", "asyncio", access_log=False),
    ),
    "granian-uvloop": Stack(
        "granian (ASGI), uvloop, single-threaded runtime, no access log",
        granian_stack("uvloop"),
    ),
    "granian-uvloop-rusttasks": Stack(
        "granian (ASGI), uvloop, Rust task implementation, no access log",
        granian_stack("uvloop", task_impl="rust"),
    ),
    "granian-uvloop-mt": Stack(
        "granian (ASGI), uvloop, multi-threaded Rust runtime, no access log",
        granian_stack("uvloop", runtime_mode="mt"),
    ),
}
