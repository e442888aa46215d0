"""`python -m tests.support.failing_workers`: `otpserver.__main__.serve` with a factory that
fails in every worker, as a broken deployment would (the supervisor itself builds nothing).

Nothing is imported at the top: each worker imports this module as its main module first.
"""

from __future__ import annotations

import sys


def build() -> object:
    """The ASGI factory each worker calls: it never produces an application."""
    raise RuntimeError("this application cannot be built")


if __name__ == "__main__":
    from otpserver.__main__ import serve
    from otpserver.settings.environment import Settings

    serve("tests.support.failing_workers:build", Settings.from_env())
    sys.exit(0)
