"""Where a request's CPU goes, in one process and without the network: a profiler's view.

`python -m bench.profile create|verify_wrong|flow|ceiling [--requests N] [--sort tottime]
[--store memory|redis]` calls the ASGI application directly (no HTTP server, no client
sockets), as the benchmark's scenarios do over HTTP, under cProfile, and prints the
costliest functions. The same settings as the benchmark: development test identities,
limits raised out of the way; the memory store, or with `--store redis` a Redis server
started for the run (its round trips are part of the time). For the live server under
load, use `py-spy top --pid <worker>` while `python -m bench` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from bench.harness import CODE, FLOW_IDENTITIES, FLOW_PREFIX, WRONG_CODE, server_env
from bench.harness import Setup as BenchSetup
from tests.support.redis_server import RedisServer

Message = MutableMapping[str, Any]
Asgi = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[Message]],
        Callable[[Message], Awaitable[None]],
    ],
    Awaitable[None],
]


class Caller:
    """Sends one HTTP request at a time into an ASGI application and keeps the cookie."""

    def __init__(self, app: Asgi) -> None:
        self.app = app

    async def post(self, path: str, body: bytes, cookie: bytes | None = None) -> tuple[int, bytes]:
        """The response's status and its `Set-Cookie` value (empty when none)."""
        headers = [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if cookie:
            headers.append((b"cookie", cookie))
        scope: MutableMapping[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        sent = False
        status, set_cookie = 0, b""

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message) -> None:
            nonlocal status, set_cookie
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    if name.lower() == b"set-cookie":
                        set_cookie = value.split(b";", 1)[0]

        await self.app(scope, receive, send)
        return status, set_cookie


def email(index: int) -> bytes:
    return json.dumps({"email": f"{FLOW_PREFIX}{index % FLOW_IDENTITIES + 1}@example.com"}).encode()


async def drive(app: Asgi, scenario: str, requests: int) -> dict[int, int]:
    """`requests` calls of `scenario`; the statuses seen, to check the run did real work."""
    caller = Caller(app)
    statuses: dict[int, int] = {}
    for index in range(requests):
        if scenario in ("create", "ceiling"):
            status, _ = await caller.post("/api/otp/create", email(index))
        else:
            status, cookie = await caller.post("/api/otp/create", email(index))
            code = CODE if scenario == "flow" else WRONG_CODE
            body = json.dumps({"otp": code}).encode()
            status, _ = await caller.post("/api/otp/verify", body, cookie)
        statuses[status] = statuses.get(status, 0) + 1
    return statuses


def build(scenario: str, store_url: str = "memory://") -> Asgi:
    """The application as the benchmark's server process would build it."""
    env = server_env(BenchSetup("profile", "memory", 1), 8000, store_url)
    os.environ.update({k: v for k, v in env.items() if k.startswith("OTP_")})
    if scenario == "ceiling":
        from bench.bare import build as build_bare

        return build_bare()
    from otpserver.asgi import build as build_otp

    return build_otp()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("scenario", choices=("ceiling", "create", "verify_wrong", "flow"))
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--sort", default="tottime", choices=("tottime", "cumulative"))
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--store", choices=("memory", "redis"), default="memory")
    options = parser.parse_args(argv)
    if options.store == "memory":
        return profile(options, "memory://")
    redis_server = RedisServer()
    redis_server.start()
    try:
        return profile(options, redis_server.url)
    finally:
        redis_server.stop()


def profile(options: argparse.Namespace, store_url: str) -> int:
    """Time, then profile, `options.requests` calls on the store at `store_url`."""
    app = build(options.scenario, store_url)
    profiler = cProfile.Profile()

    async def run() -> tuple[float, dict[int, int], dict[int, int]]:
        # One event loop for all three passes: a Redis client's connections belong to
        # the loop that opened them.
        await drive(app, options.scenario, 200)  # warm caches and the key ring
        # Process CPU time, not wall time: a virtual machine's stolen time never counts.
        started = time.process_time()
        plain = await drive(app, options.scenario, options.requests)
        elapsed = time.process_time() - started
        profiler.enable()
        statuses = await drive(app, options.scenario, options.requests)
        profiler.disable()
        return elapsed, plain, statuses

    elapsed, plain, statuses = asyncio.run(run())
    calls = options.requests * (1 if options.scenario in ("create", "ceiling") else 2)
    print(
        f"{options.scenario}: {calls} HTTP calls, {elapsed * 1e6 / calls:.0f} µs of CPU each "
        f"unprofiled (application only, no HTTP server; on Redis, not counting Redis's "
        f"own time); statuses {plain} / {statuses}"
    )
    pstats.Stats(profiler).sort_stats(options.sort).print_stats(options.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
