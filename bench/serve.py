"""Bench-only launcher: serve the OTP application or the ceiling on a chosen stack.

`python -m bench.serve otp|bare [--stack NAME]`. Host, port and workers come from the same
`OTP_*` variables as `python -m otpserver`. With `BENCH_LIVE_SESSIONS=N`, the OTP
application starts with N live single-use IDs already filed in its memory store (their
remaining lifetimes spread evenly over the code lifetime, like sessions created at a steady
rate), and the process holding the store writes its resident memory before and after the
fill to the JSON file named by `BENCH_REPORT`.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from bench.stacks import STACKS
from custom import HOOKS
from otpserver.http.app import OtpApp, create_app
from otpserver.otp.payload import LIST_ID_BYTES
from otpserver.settings.environment import Settings
from otpserver.stores import MemoryIdStore

T = TypeVar("T")

FACTORIES = {"otp": "otpserver.asgi:build", "bare": "bench.bare:build"}


def run_now(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (the memory store's methods) to completion."""
    try:
        coroutine.send(None)
    except StopIteration as finished:
        return finished.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("the coroutine suspended; only never-suspending ones may run here")


def rss_bytes() -> int:
    """This process's resident memory."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def prefill(ids: MemoryIdStore, count: int, lifetime_seconds: int) -> None:
    """File `count` random IDs, remaining lifetimes uniform over (0, lifetime]."""
    for _ in range(count):
        filed = run_now(
            ids.add(random.randbytes(LIST_ID_BYTES), random.uniform(1, lifetime_seconds))
        )
        assert filed, "a 128-bit collision"


def build_prefilled() -> OtpApp:
    """`otpserver.asgi:build` plus `BENCH_LIVE_SESSIONS` live IDs (an ASGI factory)."""
    app = create_app(Settings.from_env(), HOOKS)
    ids = app.state.verifications.ids
    if not isinstance(ids, MemoryIdStore):
        raise SystemExit("BENCH_LIVE_SESSIONS needs OTP_STORE_URL=memory://")
    count = int(os.environ.get("BENCH_LIVE_SESSIONS", "0"))
    gc.collect()
    before = rss_bytes()
    started = time.perf_counter()
    prefill(ids, count, app.state.policy.ttl_seconds)
    fill_seconds = time.perf_counter() - started
    gc.collect()
    report = {
        "live_sessions": len(ids),
        "requested": count,
        "rss_before": before,
        "rss_after": rss_bytes(),
        "fill_seconds": round(fill_seconds, 2),
        "filled_at": time.time(),
    }
    path = os.environ.get("BENCH_REPORT")
    if path:
        Path(path).write_text(json.dumps(report))
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__)
    parser.add_argument("app", choices=sorted(FACTORIES))
    parser.add_argument("--stack", choices=sorted(STACKS), default="default")
    options = parser.parse_args(argv)
    factory = FACTORIES[options.app]
    if options.app == "otp" and os.environ.get("BENCH_LIVE_SESSIONS"):
        factory = "bench.serve:build_prefilled"
    STACKS[options.stack].serve(factory, Settings.from_env())
    return 0


if __name__ == "__main__":
    sys.exit(main())
