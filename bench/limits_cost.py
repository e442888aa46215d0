"""What the abuse limits cost per request: create + verify through the ASGI app, timed.

Runs N sessions (create, then verify the right code) against the app on the memory store
and on a real Redis, with the shipped limits and with a counter store that allows
everything without I/O, and prints the time per request and the difference. Run from the
repository root: `python -m bench.limits_cost [sessions]`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import sys
import time

import httpx

from custom import HOOKS
from otpserver.hooks import Hooks
from otpserver.http.app import OtpApp, create_app
from otpserver.limits.limiter import Limiter
from otpserver.otp.credentials import Credential
from otpserver.settings.environment import Settings
from otpserver.settings.overrides import LimitOverrides
from tests.support.api import Browser
from tests.support.fakes import AllowAll, RecordingSender
from tests.support.redis_server import RedisServer

ROUNDS = 7
MASTER_KEY = bytes(range(32))
# High enough that nothing is refused: the point is the cost of deciding, not refusing.
OPEN = LimitOverrides(
    numbers={"address_requests": 10**9, "address_verifies": 10**9},
    channel_sends_per_hour={"email": 10**9, "*": 10**9},
)


def build(store_url: str, limited: bool, sender: RecordingSender) -> OtpApp:
    hooks: Hooks = dataclasses.replace(HOOKS, make_sender=lambda settings: sender)
    if not limited:
        hooks = dataclasses.replace(hooks, make_counter_store=lambda settings: AllowAll())
    settings = Settings(
        env="development", master_key=MASTER_KEY, store_url=store_url, limit_overrides=OPEN
    )
    return create_app(settings, hooks)


async def session_round(
    client: httpx.AsyncClient, sender: RecordingSender, label: str, n: int
) -> float:
    """Mean ms per request over `n` create+verify sessions."""
    browser = Browser(client, cookie_name="otp")
    started = time.perf_counter()
    for i in range(n):
        await browser.create(f"{label}-{i}@example.com", cookie=None)
        response = await browser.verify(sender.last_code)
        assert response.status_code == 200, response.text
    sender.sent.clear()
    return (time.perf_counter() - started) * 1000 / (2 * n)


async def compare(store_url: str, sessions: int, name: str) -> None:
    """Rounds alternate between the two apps, so drift (GC, caches) hits both alike."""
    sender = RecordingSender()
    apps = {limited: build(store_url, limited, sender) for limited in (False, True)}
    clients = {
        limited: httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://localhost"
        )
        for limited, app in apps.items()
    }
    times: dict[bool, list[float]] = {False: [], True: []}
    for round_number in range(ROUNDS + 1):
        for limited, client in clients.items():
            ms = await session_round(client, sender, f"{name}{limited}{round_number}", sessions)
            if round_number:  # the first round warms caches and connections
                times[limited].append(ms)
    for limited, app in apps.items():
        await clients[limited].aclose()
        await app.state.verifications.ids.aclose()
        await app.state.key_store.aclose()
        await app.state.counters.aclose()
    without, with_limits = statistics.median(times[False]), statistics.median(times[True])
    print(
        f"{name:>6}: without limits {without:.3f} ms, with limits {with_limits:.3f} ms,"
        f" added {with_limits - without:+.3f} ms per request"
    )


async def decision_cost(store_url: str, name: str, decisions: int = 5000) -> None:
    """Microseconds per decision at the limiter itself, no HTTP: a send's charge."""
    app = build(store_url, True, RecordingSender())
    limiter: Limiter = app.state.verifications.limiter
    scope = {"type": "http", "client": ("198.51.100.7", 40000), "headers": []}
    now = int(time.time())
    for i in range(200):  # warm-up: connections, the script cache
        await limiter.charge(
            "send",
            credential=Credential("email", f"warm{i}@example.com"),
            address=limiter.address_bucket(scope),
            now=now,
        )
    started = time.perf_counter()
    for i in range(decisions):
        await limiter.charge(
            "send",
            credential=Credential("email", f"{name}{i}@example.com"),
            address=limiter.address_bucket(scope),
            now=now,
        )
    elapsed = time.perf_counter() - started
    await app.state.verifications.ids.aclose()
    await app.state.key_store.aclose()
    await app.state.counters.aclose()
    print(f"{name:>6}: {elapsed * 1e6 / decisions:.1f} us per send decision (4 counters)")


async def main(sessions: int) -> None:
    server = RedisServer()
    server.start()
    try:
        print(f"{sessions} create+verify sessions x {ROUNDS} rounds, median ms per request")
        for name, url in (("memory", "memory://"), ("redis", server.url)):
            await compare(url, sessions, name)
        print("the limiter alone, sequential calls")
        for name, url in (("memory", "memory://"), ("redis", server.url)):
            await decision_cost(url, name)
    finally:
        server.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 500))
