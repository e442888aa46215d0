"""Processes under test: start them pinned to CPUs, wait until they serve, read their costs.

CPU time and resident memory are read from `/proc` for a process and all its descendants
(uvicorn and granian workers are children of a supervisor), so a figure covers every
worker. Pinning uses the scheduler affinity inherited across `fork`/`exec`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def cpu_count() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent on anything but idling, since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal ...: idle and iowait are not busy.
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLOCK_TICKS


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it, parents first."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop(0)
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            queue.extend(int(child) for child in children)
    return found


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of `pid` and its live descendants."""
    total = 0
    for member in descendants(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        # After the command name: state is field 3, so utime/stime (14, 15) are at 11, 12.
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """Resident memory of `pid` and its live descendants."""
    total = 0
    for member in descendants(pid):
        try:
            pages = Path(f"/proc/{member}/statm").read_text().split()[1]
        except OSError:
            continue
        total += int(pages) * PAGE_BYTES
    return total


class Process:
    """A server (or Redis) process started by the harness, stopped by its own id only."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cpus: set[int] | None = None,
        log_dir: Path | None = None,
        cwd: Path = ROOT,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.cpus = cpus
        self.cwd = cwd
        self.log_path = (log_dir or ROOT / "bench" / "results") / f"{name}.log"
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._popen is not None, "not started"
        return self._popen.pid

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cpus = self.cpus

        def pin() -> None:
            if cpus:
                os.sched_setaffinity(0, cpus)

        with self.log_path.open("wb") as log:
            self._popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=pin,  # the harness starts no threads before this
            )

    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period; only this process (and so its workers)."""
        if self._popen is None:
            return
        if self._popen.poll() is None:
            self._popen.send_signal(signal.SIGTERM)
            try:
                self._popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
        self._popen = None


def python_argv(*args: str) -> list[str]:
    """The interpreter running the harness, with `args`."""
    return [sys.executable, *args]


def pin_all_threads(pid: int, cpus: set[int]) -> None:
    """Pin every thread of an already running process (e.g. Redis) to `cpus`."""
    for task in Path(f"/proc/{pid}/task").glob("*"):
        os.sched_setaffinity(int(task.name), cpus)


def wait_until_serving(process: Process, url: str, timeout_seconds: float = 60) -> None:
    """Poll `url` until any HTTP answer comes back, or raise with the process's output."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if not process.running():
            raise RuntimeError(f"{process.name} exited early:\n{process.output()[-4000:]}")
        try:
            httpx.get(url, timeout=5)
        except httpx.TransportError:
            time.sleep(0.1)
            continue
        return
    raise RuntimeError(f"{process.name} did not start:\n{process.output()[-4000:]}")
