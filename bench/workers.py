"""Requests each worker served, read from the server's own Prometheus files.

With a metrics listener, every worker counts in files of its own (`histogram_<pid>.db`)
under the listener's directory (`otpserver.observability.metrics.files_directory`). Each
request of the measured scenarios makes exactly one round trip to Redis (the `trips` phase
checks it), so the round trips a worker timed are the requests it served, give or take the
key ring's refresh every 30 s. The ceiling, which has no store, counts nothing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from prometheus_client.mmap_dict import MmapedDict

from tests.support import sockets

ROUND_TRIPS = "otp_store_latency_seconds_bucket"
"""One count per answered round trip, in the bucket of its latency."""


def requests_per_worker(directory: Path) -> dict[int, int]:
    """Round trips answered so far in each process, by process id."""
    counts: dict[int, int] = {}
    for path in directory.glob("histogram_*.db"):
        pid = int(path.stem.rpartition("_")[2])
        try:
            # prometheus-client leaves this unannotated.
            values = MmapedDict.read_all_values_from_file(str(path))  # type: ignore[no-untyped-call]
        except FileNotFoundError:
            continue
        # In these files each bucket holds only its own observations, not a running sum.
        total = sum(value for key, value, *_ in values if json.loads(key)[1] == ROUND_TRIPS)
        if total:
            counts[pid] = int(total)
    return counts


def served_between(before: dict[int, int], after: dict[int, int]) -> dict[str, int]:
    """Requests each worker served between two readings, by process id (as text, for JSON)."""
    served = {pid: count - before.get(pid, 0) for pid, count in after.items()}
    return {str(pid): count for pid, count in sorted(served.items()) if count}


def wait_until_listening(port: int, workers: int, timeout_seconds: float = 120) -> None:
    """Wait until `workers` sockets listen on `port`: a worker that joins late misses the
    connections a run opens before it listens (each stays with the worker it reached)."""
    deadline = time.monotonic() + timeout_seconds
    while len(sockets.listening_inodes(port)) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {workers} workers listening on port {port}")
        time.sleep(0.1)
