"""Where a request's instructions go: each phase counted in one process, with parts swapped out.

`python -m bench.phases [--requests N] [--without PART,...]` runs itself again under
`valgrind --tool=callgrind`, builds the application as `python -m bench.profile` does
(memory store, the benchmark's settings), warms it up, and counts N creates, then N
right-code verifies, then N wrong-code verifies, each called straight into the ASGI
application (no HTTP server, no sockets): `callgrind_control --zero` before a phase,
`--dump` after it. `--without` first swaps parts for constants, so the difference between
a run with a part and one without is what the part costs per request:

- `signature`: the Ed25519 signature of a result (64 zero bytes instead);
- `result`: the whole signed result (a fixed string);
- `audit`: every audit event (nothing written);
- `counters`: keying the limit counters (each plan made once per credential and reused);
- `seal`: sealing (every create answers the first cookie it sealed; creates only, since
  the verifies need cookies of their own).

Figures are instructions per request of the application alone; `python -m bench` counts
the whole server (`bench/instructions.py`), HTTP included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.harness import CODE, COOKIE_NAME, FLOW_IDENTITIES, FLOW_PREFIX, WRONG_CODE
from bench.instructions import available, dump_total
from bench.profile import LOCAL, build
from tests.support.asgi import Asgi, post

PARTS = ("signature", "result", "audit", "counters", "seal")
PHASES = ("create", "right", "wrong")
WARMUP_FLOWS = 300
CHILD = "BENCH_PHASES_CHILD"


def swap_out(parts: set[str]) -> None:
    """Replace each named part with a constant, for this process."""
    if "signature" in parts:
        from otpserver.results.keys import PeriodKey

        PeriodKey.sign = lambda self, message: bytes(64)  # type: ignore[method-assign]
    if "result" in parts:
        from otpserver.results.signer import ResultSigner

        ResultSigner.for_browser = lambda self, *a, **k: "header.claims.signature"  # type: ignore[method-assign]
    if "audit" in parts:
        from otpserver.observability.audit import AuditTrail

        AuditTrail.emit = lambda self, *a, **k: None  # type: ignore[method-assign]
    if "counters" in parts:
        from otpserver.limits.limiter import Limiter

        plan = Limiter.plan
        plans: dict[tuple[Any, ...], Any] = {}

        def remembered(self: Limiter, action: Any, credential: Any, address: str) -> Any:
            key = (action, credential, address)
            if key not in plans:
                plans[key] = plan(self, action, credential, address)
            return plans[key]

        Limiter.plan = remembered  # type: ignore[method-assign]
    if "seal" in parts:
        from otpserver.http.cookies import CookieCodec

        seal = CookieCodec.seal
        first: list[str] = []

        async def sealed_once(self: CookieCodec, tokens: Any, now: float) -> str:
            if not first:
                first.append(await seal(self, tokens, now))
            return first[0]

        CookieCodec.seal = sealed_once  # type: ignore[method-assign]


async def create(app: Asgi, prefix: str, index: int) -> bytes:
    address = f"{prefix}{index % FLOW_IDENTITIES + 1}@example.com"
    answer, _ = await post(
        app, "/api/otp/create", json.dumps({"email": address}).encode(), origin=LOCAL
    )
    if answer is None or answer.status != 200:
        raise RuntimeError(f"create answered {answer}")
    return answer.cookie(COOKIE_NAME.encode()) or b""


async def verify(app: Asgi, cookie: bytes, code: str) -> int:
    header = (b"cookie", COOKIE_NAME.encode() + b"=" + cookie)
    body = json.dumps({"otp": code}).encode()
    answer, _ = await post(app, "/api/otp/verify", body, origin=LOCAL, headers=[header])
    return 0 if answer is None else answer.status


def callgrind(*args: str) -> None:
    """Send `callgrind_control` a command for this very process, and wait for it."""
    command = ["callgrind_control", *args, str(os.getpid())]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)  # nosec B603


async def count(requests: int, parts: set[str]) -> None:
    """The child: warm up, then each phase between a zero and a dump of the counters."""
    app = build("flow")
    swap_out(parts)
    for index in range(WARMUP_FLOWS):
        await verify(app, await create(app, FLOW_PREFIX, index), CODE if index % 2 else WRONG_CODE)
    callgrind("--instr=on")

    async def phase(name: str, run: Callable[[], Awaitable[list[Any]]]) -> list[Any]:
        callgrind("--zero")
        done = await run()
        callgrind("--dump=" + name)
        return done

    async def creates(prefix: str) -> list[bytes]:
        return [await create(app, prefix, index) for index in range(requests)]

    cookies = await phase("create", lambda: creates(FLOW_PREFIX))
    if "seal" in parts:
        return
    guessed = await creates("w")

    async def verifies(held: list[bytes], code: str, expected: int) -> list[int]:
        statuses = [await verify(app, cookie, code) for cookie in held]
        if set(statuses) != {expected}:
            raise RuntimeError(f"verifies answered {sorted(set(statuses))}, not {expected}")
        return statuses

    await phase("right", lambda: verifies(cookies, CODE, 200))
    await phase("wrong", lambda: verifies(guessed, WRONG_CODE, 403))


def run(requests: int, parts: set[str]) -> dict[str, int]:
    """Run the child under callgrind; instructions per request of each phase it dumped."""
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "callgrind.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}.%p",
            sys.executable,
            "-m",
            "bench.phases",
            "--requests",
            str(requests),
            "--without",
            ",".join(sorted(parts)),
        ]
        env = {**os.environ, CHILD: "1"}
        subprocess.run(command, check=True, env=env, stderr=subprocess.DEVNULL)  # nosec B603
        figures: dict[str, int] = {}
        for dump in sorted(Path(directory).glob("callgrind.out.*.*")):
            text = dump.read_text(errors="replace")
            name = next(
                (line.rsplit(" ", 1)[-1] for line in text.splitlines() if "Trigger" in line), ""
            )
            if name in PHASES:
                figures[name] = dump_total(dump) // requests
        return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.phases", description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--without", default="", help="comma list of: " + ", ".join(PARTS))
    options = parser.parse_args(argv)
    parts = set(filter(None, options.without.split(",")))
    unknown = parts - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; known: {', '.join(PARTS)}")
    if os.environ.get(CHILD):
        asyncio.run(count(options.requests, parts))
        return 0
    if not available():
        print("valgrind is not installed: apt-get install valgrind", file=sys.stderr)
        return 1
    figures = run(options.requests, parts)
    label = ", ".join(sorted(parts)) or "nothing"
    print(f"instructions per request, in one process, without {label}:")
    for name in PHASES:
        if name in figures:
            print(f"  {name:6s} {figures[name]:>12,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
