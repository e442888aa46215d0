"""ISO-8601 UTC timestamps in whole seconds, the only time format the API uses."""

from __future__ import annotations

import time


def iso(instant: int) -> str:
    """`2026-11-23T06:30:00Z` for a Unix time in seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(instant))
