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

from bench.harness import (
    CODE,
    COOKIE_NAME,
    FLOW_IDENTITIES,
    FLOW_PREFIX,
    WRONG_CODE,
    server_env,
)
from bench.harness import Setup as BenchSetup
from tests.support.asgi import Asgi, Origin, post
from tests.support.redis_server import RedisServer

LOCAL = Origin(scheme="http", host="127.0.0.1", port=8000, client="127.0.0.1")
"""What the benchmark's requests look like to the server: plain HTTP on loopback."""


def email(index: int) -> bytes:
    return json.dumps({"email": f"{FLOW_PREFIX}{index % FLOW_IDENTITIES + 1}@example.com"}).encode()


async def drive(app: Asgi, scenario: str, requests: int) -> dict[int, int]:
    """`requests` calls of `scenario`; the statuses seen, to check the run did real work."""
    statuses: dict[int, int] = {}
    for index in range(requests):
        answer, _ = await post(app, "/api/otp/create", email(index), origin=LOCAL)
        if scenario in ("verify_wrong", "flow") and answer is not None:
            cookie = answer.cookie(COOKIE_NAME.encode()) or b""
            code = CODE if scenario == "flow" else WRONG_CODE
            body = json.dumps({"otp": code}).encode()
            cookie_header = (b"cookie", COOKIE_NAME.encode() + b"=" + cookie)
            answer, _ = await post(
                app, "/api/otp/verify", body, origin=LOCAL, headers=[cookie_header]
            )
        status = 0 if answer is None else answer.status
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
    redis_note = "" if store_url == "memory://" else "; Redis's own CPU not counted"
    print(
        f"{options.scenario}: {calls} HTTP calls, {elapsed * 1e6 / calls:.0f} µs of CPU each "
        f"unprofiled (application only, no HTTP server{redis_note}); "
        f"statuses {plain} / {statuses}"
    )
    pstats.Stats(profiler).sort_stats(options.sort).print_stats(options.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
