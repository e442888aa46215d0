"""The load generator: `wrk` with a Lua scenario, its summary parsed from one JSON line.

wrk is a closed-loop generator: a fixed number of connections, each sending its next
request when the previous answer arrives. Throughput is what the server sustains at that
concurrency and latencies include queueing at it (no coordinated-omission correction).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LUA_DIR = Path(__file__).parent / "lua"
MARKER = "BENCH-JSON "


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What one wrk run measured."""

    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[int, int]
    socket_errors: int
    extra: dict[str, int] = field(default_factory=dict)
    client_cpu_seconds: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def unexpected(self, expected: set[int]) -> int:
        """Responses with a status outside `expected`, plus socket errors."""
        wrong = sum(n for status, n in self.statuses.items() if status not in expected)
        return wrong + self.socket_errors


def available() -> bool:
    """Whether `wrk` is installed (`apt-get install wrk`)."""
    return shutil.which("wrk") is not None


def script_path(scenario: str, directory: Path) -> Path:
    """`common.lua` followed by the scenario's script, as one file wrk can load."""
    path = directory / f"{scenario}.lua"
    path.write_text(
        (LUA_DIR / "common.lua").read_text() + (LUA_DIR / f"{scenario}.lua").read_text()
    )
    return path


def run(
    url: str,
    scenario: str,
    args: list[str],
    *,
    seconds: float,
    connections: int,
    cpus: set[int] | None = None,
) -> LoadResult:
    """Drive `url` with `scenario` for `seconds` from one wrk thread."""
    with tempfile.TemporaryDirectory(prefix="otp-bench-") as scratch:
        script = script_path(scenario, Path(scratch))
        argv = [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
            "--",
            *args,
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)

        def pin() -> None:
            if cpus:
                os.sched_setaffinity(0, cpus)

        completed = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=False,
            preexec_fn=pin,  # the harness starts no threads before this
            timeout=seconds + 60,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed ({completed.returncode}):\n{completed.stderr}")
    line = next((x for x in completed.stdout.splitlines() if x.startswith(MARKER)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{completed.stdout}\n{completed.stderr}")
    data: dict[str, Any] = json.loads(line[len(MARKER) :])
    errors = data["errors"]
    return LoadResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        statuses={int(k): v for k, v in data["statuses"].items()},
        socket_errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        extra=dict(data["extra"]),
        client_cpu_seconds=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
    )
