"""`python -m bench`: run the benchmark phases and write results as JSON and Markdown.

Phases (all by default): `main` (create, verify with a wrong code and the full flow on the
memory store with one worker and on Redis with one and two workers, each beside the bare
ceiling), `stacks` (the same on other server stacks), `scaling` (0, 100 k and 1 M live
sessions in the memory store), `trips` (Redis round trips per request), `sizes` (cookie
sizes, memory per live ID) and `instructions` (instructions per request under callgrind,
the figures that hold still; skipped with a note when valgrind is not installed). Results
go to `bench/results/<time>.json|.md`, and the Markdown is printed. `--smoke` runs every
scenario once for a second, on the first setup and the first with several workers, to check
the harness.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import redis

from bench import harness, instructions, procs, report, signing, trips, wrk
from bench.harness import Options, Setup
from bench.stacks import STACKS
from tests.support.redis_server import RedisServer

PHASES = ("main", "stacks", "scaling", "trips", "sizes", "instructions")
MAIN_SETUPS = (
    Setup("memory, 1 worker", "memory", 1),
    Setup("redis, 1 worker", "redis", 1),
    Setup("redis, 2 workers", "redis", 2),
)
COMPARED_STACKS = (
    "uvicorn-httptools-uvloop-log",
    "uvicorn-httptools-asyncio",
    "uvicorn-h11-uvloop",
    "granian-uvloop",
    "granian-uvloop-rusttasks",
)
"""Beside the default: the original default (access log on), each of uvicorn's two options
changed alone, and granian two ways."""
STACK_SCENARIOS = ("ceiling", "create", "flow")
"""The full flow includes a correct verify; the wrong-code scenario is left out here because
its cookie pool would double the phase's length."""
STACK_ROUNDS = 3
LIVE_SESSION_LEVELS = (0, 100_000, 1_000_000)
SCALING_ENV = {"OTP_TTL_SECONDS": "600"}
"""The longest code lifetime, so pre-filled sessions outlive the scaling phase."""
COUNTED_REQUESTS = 1000
"""Requests per scenario in the instructions phase: enough that per-process costs (the key
ring's refresh every 30 s, a collection of the oldest generation) spread thin."""
PACKAGES = (
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "granian",
    "redis",
    "cryptography",
    "pynacl",
)


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line),
        platform.processor(),
    )
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    os_name = next(
        (
            line.partition("=")[2].strip('"')
            for line in Path("/etc/os-release").read_text().splitlines()
            if line.startswith("PRETTY_NAME=")
        ),
        platform.system(),
    )
    versions = []
    for package in PACKAGES:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return {
        "cpu": f"{model}, {procs.cpu_count()} CPUs available",
        "memory": f"{memory_kb / 2**20:.1f} GiB",
        "os": f"{os_name}, Linux {platform.release()}",
        "python": platform.python_version(),
        "packages": ", ".join(versions),
        "load generator": (wrk_version.stdout or wrk_version.stderr).split("\n")[0].strip(),
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--phases", default=",".join(PHASES), help="comma list of phases")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per setup (medians)")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of one run")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument(
        "--stacks", default=",".join(COMPARED_STACKS), help="stacks for the stacks phase"
    )
    parser.add_argument("--setups", default="", help="only main setups whose name has this")
    parser.add_argument(
        "--counted",
        type=int,
        default=COUNTED_REQUESTS,
        help="requests per scenario in the instructions phase",
    )
    parser.add_argument("--smoke", action="store_true", help="one short round of everything")
    parser.add_argument("--out", type=Path, default=procs.ROOT / "bench" / "results")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if not wrk.available():
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    phases = [p for p in args.phases.split(",") if p]
    unknown = set(phases) - set(PHASES)
    if unknown:
        print(f"unknown phases: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    options = Options(seconds=args.seconds, rounds=args.rounds, connections=args.connections)
    setups = [s for s in MAIN_SETUPS if args.setups in s.name]
    stacks = [s for s in args.stacks.split(",") if s]
    levels: tuple[int, ...] = LIVE_SESSION_LEVELS
    counted, counted_warmup = args.counted, instructions.WARMUP_REQUESTS
    if args.smoke:
        # Eight connections per run: enough that each of two workers is all but sure to get
        # some, so the smoke run shows both in the requests per worker.
        options = Options(seconds=1, rounds=1, connections=8, warmup_seconds=0, pool_factor=2)
        several = [s for s in setups[1:] if s.workers > 1][:1]
        setups, stacks, levels = setups[:1] + several, stacks[:1], (0, 1000)
        counted, counted_warmup = 10, 10
    started = time.strftime("%Y-%m-%dT%H-%M-%SZ", time.gmtime())
    log_dir = args.out / f"{started}-logs"
    results: dict[str, Any] = {
        "started": started,
        "machine": machine(),
        "options": {
            "rounds": options.rounds,
            "seconds": options.seconds,
            "connections": options.connections,
            "warmup_seconds": options.warmup_seconds,
            "wrk threads": 1,
        },
    }
    needs_redis = (
        ("main" in phases and any(s.store == "redis" for s in setups))
        or "trips" in phases
        or ("instructions" in phases and instructions.available())
    )
    server = RedisServer() if needs_redis else None
    if server is not None:
        server.start()
    try:
        redis_pid = None
        if server is not None:
            client = redis.Redis.from_url(server.url)
            redis_pid = int(client.info("server")["process_id"])
        if "main" in phases:
            results["main"] = []
            for setup in setups:
                url = "memory://"
                if setup.store == "redis":
                    assert server is not None
                    client.flushall()
                    url = server.url
                print(f"== {setup.name}", file=sys.stderr, flush=True)
                results["main"].append(
                    harness.run_setup(
                        setup,
                        options,
                        harness.SCENARIOS,
                        url,
                        log_dir,
                        redis_pid if setup.store == "redis" else None,
                    )
                )
        if "stacks" in phases:
            results["stacks"] = []
            for name in ["default", *stacks]:
                if name not in STACKS:
                    raise SystemExit(f"unknown stack {name}; known: {', '.join(STACKS)}")
                if name.startswith("granian") and importlib.util.find_spec("granian") is None:
                    print(f"skipping {name}: pip install -e '.[bench]'", file=sys.stderr)
                    continue
                print(f"== stack {name}", file=sys.stderr, flush=True)
                setup = Setup(f"stack {name}", "memory", 1, stack=name)
                stack_options = dataclasses.replace(
                    options, rounds=min(options.rounds, STACK_ROUNDS)
                )
                results["stacks"].append(
                    harness.run_setup(setup, stack_options, STACK_SCENARIOS, "memory://", log_dir)
                )
        if "scaling" in phases:
            print("== scaling", file=sys.stderr, flush=True)
            results["scaling"] = harness.run_scaling(
                levels, options, ("create", "flow"), log_dir, SCALING_ENV
            )
        if "trips" in phases:
            assert server is not None
            print("== round trips", file=sys.stderr, flush=True)
            client.flushall()
            results["round_trips"] = round_trips(server.url, log_dir)
        if "sizes" in phases:
            print("== sizes", file=sys.stderr, flush=True)
            results["sizes"] = sizes_in_subprocess()
        if "instructions" in phases:
            if instructions.available():
                assert server is not None
                print("== instructions, memory", file=sys.stderr, flush=True)
                memory = instructions.count(log_dir, counted, warmup=counted_warmup)
                print("== instructions, redis", file=sys.stderr, flush=True)
                client.flushall()
                redis_counts = instructions.count(
                    log_dir,
                    counted,
                    store_url=server.url,
                    warmup=counted_warmup,
                    ceiling=memory["ceiling"],  # the bare endpoint uses no store
                )
                print("== instructions, result signing", file=sys.stderr, flush=True)
                memory["result_signing"] = signing.as_row(
                    signing.count(), memory["ceiling"]["instructions_per_request"]
                )
                results["instructions"] = {"memory": memory, "redis": redis_counts}
            else:
                print(
                    "skipping instructions: valgrind is not installed (apt-get install -y "
                    "valgrind)",
                    file=sys.stderr,
                )
    finally:
        if server is not None:
            server.close()
    args.out.mkdir(parents=True, exist_ok=True)
    text = report.markdown(results)
    (args.out / f"{started}.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / f"{started}.md").write_text(text)
    shutil.copyfile(args.out / f"{started}.json", args.out / "latest.json")
    shutil.copyfile(args.out / f"{started}.md", args.out / "latest.md")
    print(text)
    return 0


def round_trips(redis_url: str, log_dir: Path) -> dict[str, Any]:
    """Start one worker on Redis with resends allowed at once, and count."""
    setup = Setup("round trips", "redis", 1, extra_env={"OTP_RESEND_COOLDOWN_SECONDS": "0"})
    servers = harness.Servers(
        setup, redis_url, harness.Pinning(None, None), log_dir, with_ceiling=False
    )
    servers.start()
    try:
        return trips.count(servers.otp_url, redis_url)
    finally:
        servers.stop()


def sizes_in_subprocess() -> dict[str, Any]:
    """Cookie sizes and store memory, measured in a fresh interpreter."""
    completed = subprocess.run(
        procs.python_argv("-m", "bench.sizes"),
        cwd=procs.ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    data: dict[str, Any] = json.loads(completed.stdout)
    return data


if __name__ == "__main__":
    sys.exit(main())
