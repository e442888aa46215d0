"""What a refused create costs: served, refused as invalid, and refused once over the allowance.

Runs N creates through the ASGI app on the memory store, three ways: valid addresses
(codes sent), long internationalised addresses the validator refuses (each one validated
and charged against the address), and the same invalid addresses from one client once its
allowance is spent (answered 429 before any validation). Prints the time per request and
how many requests were validated and charged. Run from the repository root:
`python -m bench.refused_cost [requests]`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import sys
import time

import httpx

from custom import HOOKS
from otpserver.http.app import OtpApp, create_app
from otpserver.settings.environment import Settings
from otpserver.settings.overrides import LimitOverrides
from tests.support.fakes import RecordingSender

ROUNDS = 5
MASTER_KEY = bytes(range(32))
LONG_INVALID = "\u00e9" * 70 + "@" + "\u00e4" * 60 + ".example"
"""Refused only after the validator's full work (a local part over 64 characters)."""
OPEN = {"address_requests": 10**9, "network_requests": 10**9, "credential_sends": 10**9}


def build(numbers: dict[str, int]) -> tuple[OtpApp, RecordingSender]:
    sender = RecordingSender()
    hooks = dataclasses.replace(HOOKS, make_sender=lambda settings: sender)
    settings = Settings(
        env="development",
        master_key=MASTER_KEY,
        limit_overrides=LimitOverrides(
            numbers=numbers, channel_sends_per_hour={"email": 10**9, "*": 10**9}
        ),
    )
    return create_app(settings, hooks), sender


async def timed(app: OtpApp, bodies: list[str], peer: str) -> tuple[float, dict[int, int]]:
    """Mean ms per create over `bodies`, and how many answers of each status."""
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    statuses: dict[int, int] = {}
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        started = time.perf_counter()
        for email in bodies:
            client.cookies.clear()  # each create a fresh browser: no cookie, no pending list
            response = await client.post("/api/otp/create", json={"email": email})
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        elapsed = time.perf_counter() - started
    return elapsed * 1000 / len(bodies), statuses


async def main(requests: int) -> None:
    print(f"{requests} creates x {ROUNDS} rounds, median ms per request (memory store)")
    results: dict[str, list[float]] = {"served": [], "invalid": [], "over": []}
    counts: dict[str, dict[int, int]] = {}
    for round_number in range(ROUNDS + 1):
        served, _ = build(OPEN)
        ms, counts["served"] = await timed(
            served, [f"u{round_number}-{i}@example.com" for i in range(requests)], "192.0.2.1"
        )
        invalid, _ = build(OPEN)
        ms_invalid, counts["invalid"] = await timed(invalid, [LONG_INVALID] * requests, "192.0.2.2")
        over, _ = build({})  # the shipped allowance: 30 per address per 10 minutes
        ms_over, counts["over"] = await timed(over, [LONG_INVALID] * requests, "192.0.2.3")
        if round_number:  # the first round warms caches
            results["served"].append(ms)
            results["invalid"].append(ms_invalid)
            results["over"].append(ms_over)
    base = statistics.median(results["served"])
    for name, label in (
        ("served", "valid, code sent"),
        ("invalid", "invalid, validated and charged"),
        ("over", "invalid, one client past its allowance"),
    ):
        ms = statistics.median(results[name])
        print(f"{label:>40}: {ms:.3f} ms ({ms / base:.2f}x served)  answers {counts[name]}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 300))
