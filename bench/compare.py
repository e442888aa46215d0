"""`python -m bench.compare`: before/after, two or more source trees served side by side.

Each tree is served by its own `python -m otpserver` (so each runs the server stack its own
code chooses), all on the same settings and CPUs, and the rounds interleave the trees so
the machine's drift hits them alike. For example, against the last commit:

    git archive HEAD | (mkdir -p /tmp/before && tar -x -C /tmp/before)
    python -m bench.compare before=/tmp/before after=. --store redis --workers 2

With `--instructions N`, each tree instead answers N requests of every scenario one at a
time under callgrind (`bench/instructions.py`), and the table gives instructions per
request: figures that repeat to within 0.3 %, so a change of 1-2 % shows, where requests/s
on a shared machine cannot resolve 10 %.

Results go to `bench/results/compare-<time>.json|.md`; the Markdown is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import redis

from bench import harness, instructions, procs, report, wrk
from bench.harness import Options, Setup
from otpserver.stores.redis import COUNTER_PREFIX
from tests.support.redis_server import RedisServer


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    parser.add_argument(
        "trees", nargs="+", help="name=path of a source tree, the first is 'before'"
    )
    parser.add_argument("--store", choices=("memory", "redis"), default="memory")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--live-sessions", type=int, default=0, help="pre-filled IDs (memory store; bench.serve)"
    )
    parser.add_argument("--scenarios", default="create,verify_wrong,flow")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--instructions",
        type=int,
        default=0,
        metavar="N",
        help="count instructions over N requests per scenario (callgrind) instead of load",
    )
    parser.add_argument("--out", type=Path, default=procs.ROOT / "bench" / "results")
    return parser.parse_args(argv)


def table(result: dict[str, Any], scenarios: list[str]) -> str:
    lines = [
        "| tree | scenario | req/s median (min-max) | vs first | p50 ms | p99 ms | max ms "
        "| server CPU ms/req | Redis CPU ms/req | unexpected |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for scenario in scenarios:
        for entry in result["setups"]:
            row = entry["summary"][scenario]
            redis_cpu = row.get("redis_cpu_ms_per_request")
            lines.append(
                f"| {entry['setup']['name']} | {report.NAMES[scenario]} "
                f"| {row['rps']:,.0f} ({row['rps_min']:,.0f}-{row['rps_max']:,.0f}) "
                f"| {row.get('ratio', 1):.0%} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} "
                f"| {row['max_ms']:.0f} "
                f"| {row['server_cpu_ms_per_request']:.3f} "
                f"| {'—' if redis_cpu is None else f'{redis_cpu:.3f}'} "
                f"| {row['unexpected']} |"
            )
    return "\n".join(lines)


def instructions_table(counts: dict[str, dict[str, Any]], scenarios: list[str]) -> str:
    """Instructions per request of each tree, and each as a share of the first tree's."""
    lines = [
        "| tree | scenario | instructions per request | vs first | unexpected |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    first = next(iter(counts.values()))
    for scenario in ["ceiling", *scenarios]:
        for name, rows in counts.items():
            row = rows[scenario]
            share = row["instructions_per_request"] / first[scenario]["instructions_per_request"]
            lines.append(
                f"| {name} | {report.NAMES[scenario]} | {row['instructions_per_request']:,.0f} "
                f"| {share:.1%} | {row['unexpected']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.instructions and not instructions.available():
        print("valgrind is not installed: apt-get install -y valgrind", file=sys.stderr)
        return 2
    if not args.instructions and not wrk.available():
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    scenarios = [s for s in args.scenarios.split(",") if s]
    setups = []
    for tree in args.trees:
        name, _, path = tree.partition("=")
        setups.append(
            Setup(
                name,
                args.store,
                args.workers,
                live_sessions=args.live_sessions,
                extra_env={"OTP_TTL_SECONDS": "600"} if args.live_sessions else {},
                root=Path(path or name).resolve(),
            )
        )
    started = time.strftime("%Y-%m-%dT%H-%M-%SZ", time.gmtime())
    server = RedisServer() if args.store == "redis" else None
    store_url, redis_pid = "memory://", None
    if server is not None:
        server.start()
        store_url = server.url
        client = redis.Redis.from_url(server.url)
        redis_pid = int(client.info("server")["process_id"])
        client.close()
    log_dir = args.out / f"compare-{started}-logs"
    heading = f"# Comparison {started}\n\n"
    try:
        if args.instructions:
            data, text = count_instructions(args, setups, scenarios, store_url, log_dir)
        else:
            forget = None if server is None else partial(clear_limit_counters, server.url)
            data, text = run_load(args, setups, scenarios, store_url, log_dir, redis_pid, forget)
    finally:
        if server is not None:
            server.close()
    data["options"] = vars(args) | {"out": str(args.out)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"compare-{started}.json").write_text(json.dumps(data, indent=1) + "\n")
    (args.out / f"compare-{started}.md").write_text(heading + text)
    print(heading + text)
    return 0


def count_instructions(
    args: argparse.Namespace,
    setups: list[Setup],
    scenarios: list[str],
    store_url: str,
    log_dir: Path,
) -> tuple[dict[str, Any], str]:
    """Each tree's instructions per request, one tree after another (counts do not drift)."""
    counts = {}
    for setup in setups:
        if not store_url.startswith("memory:"):
            clear_limit_counters(store_url)
        counts[setup.name] = instructions.count(
            log_dir / setup.name,
            args.instructions,
            store_url=store_url,
            root=setup.root,
            scenarios=scenarios,
        )
    text = (
        f"{args.store}, 1 worker; instructions over {args.instructions} requests per "
        f"scenario (callgrind)\n\n" + instructions_table(counts, scenarios) + "\n"
    )
    return {"instructions": counts}, text


def run_load(
    args: argparse.Namespace,
    setups: list[Setup],
    scenarios: list[str],
    store_url: str,
    log_dir: Path,
    redis_pid: int | None,
    before_each_run: Callable[[], None] | None,
) -> tuple[dict[str, Any], str]:
    """The trees under load side by side, their rounds interleaved."""
    options = Options(seconds=args.seconds, rounds=args.rounds, connections=args.connections)
    result = harness.run_comparison(
        setups, options, tuple(scenarios), store_url, log_dir, redis_pid, before_each_run
    )
    result["machine"] = harness_machine()
    prefills = [
        f"{e['setup']['name']}: {e['prefill']['live_sessions']:,} live IDs, "
        f"{per_session(e['prefill']):.0f} B each (RSS)"
        for e in result["setups"]
        if e.get("prefill") and e["prefill"]["live_sessions"]
    ]
    text = (
        f"{args.store}, {args.workers} worker(s); "
        f"{args.rounds} rounds of {args.seconds:g} s, {args.connections} connections\n\n"
        + table(result, scenarios)
        + "\n"
        + "".join(f"\n{line}" for line in prefills)
        + ("\n" if prefills else "")
    )
    return result, text


def clear_limit_counters(redis_url: str) -> None:
    """Forget every limit count in the shared Redis. The trees share it, and together
    their wrong guesses would otherwise lock the benchmark's identities within a few
    rounds (`OTP_LIMIT_MAX_FAILURES` is at most 100), turning later rounds into 429s."""
    client = redis.Redis.from_url(redis_url)
    try:
        # Trees from before the `{otp}` hash tag name their counters `otp:rl:…`.
        keys = [
            key
            for prefix in (COUNTER_PREFIX, b"otp:rl:")
            for key in client.scan_iter(match=prefix + b"*", count=1000)
        ]
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


def per_session(prefill: dict[str, Any]) -> float:
    """Resident bytes per pre-filled live ID."""
    grown = float(prefill["rss_after"] - prefill["rss_before"])
    return grown / float(prefill["live_sessions"])


def harness_machine() -> dict[str, str]:
    from bench.__main__ import machine

    return machine()


if __name__ == "__main__":
    sys.exit(main())
