"""Instructions per signed result: `ResultSigner.issue` alone, counted by callgrind.

Every approval signs one result (an Ed25519 JWS), the largest single cost of an approving
request. This counts it apart from any request: a child process signs under `valgrind
--tool=callgrind` with instrumentation off, turns it on around the measured calls only,
and dumps; the dump's total over the count is the figure, for the whole result (claims,
encoding, signature) and for the signature alone.

    python -m bench.signing [--results N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import procs

WARMUP = 200


def _instrument(flag: str) -> None:
    subprocess.run(
        ["callgrind_control", flag, str(os.getpid())], capture_output=True, check=True, timeout=120
    )


def _child(results: int) -> None:
    """Runs under callgrind: each measured block is one dump, in order."""
    from otpserver.otp.credentials import Credential
    from otpserver.results.signer import ResultSigner
    from otpserver.settings.api import ApiSettings

    signer = ResultSigner.from_settings(ApiSettings(), bytes(range(32)), development=True)
    credential = Credential("email", "someone@example.com")
    now = 1_800_000_000.0
    key = signer.keys.signing_key(now)
    message = signer.for_browser(credential, now).rpartition(".")[0].encode()
    blocks: dict[str, Callable[[], object]] = {
        "result": lambda: signer.for_browser(credential, now),
        "signature": lambda: key.sign(message),
    }
    for name, block in blocks.items():
        for _ in range(WARMUP):
            block()
        _instrument("--instr=on")
        _instrument("--zero")
        for _ in range(results):
            block()
        _instrument("--dump=" + name)
        _instrument("--instr=off")


def count(results: int = 1000) -> dict[str, Any]:
    """Instructions per signed result and per signature alone."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={out}/callgrind.%p",
                *procs.python_argv("-m", "bench.signing", "--child", str(results)),
            ],
            cwd=procs.ROOT,
            env={**os.environ, "PYTHONHASHSEED": "0"},
            capture_output=True,
            check=True,
            timeout=1800,
        )
        time.sleep(0.2)
        totals = {}
        for dump in out.glob("callgrind.*.*"):
            text = dump.read_text(errors="replace")
            # The dump's header names the request that made it: "desc: Trigger: dump <name>".
            trigger = next(
                (line for line in text.splitlines() if line.startswith("desc: Trigger:")), ""
            )
            name = trigger.rpartition(" ")[2]
            total = next(
                int(line.split()[1])
                for line in text.splitlines()
                if line.startswith(("totals:", "summary:"))
            )
            totals[name] = total
    return {
        "results": results,
        "instructions_per_result": totals["result"] / results,
        "instructions_per_signature": totals["signature"] / results,
    }


def as_row(counted: dict[str, Any], ceiling_per_request: float) -> dict[str, Any]:
    """`counted` as a row of the instructions table: a result against one bare request."""
    per_result = counted["instructions_per_result"]
    return {
        "requests": counted["results"],
        "instructions_per_request": per_result,
        "instructions_per_signature": counted["instructions_per_signature"],
        "ratio": ceiling_per_request / per_result,
        "unexpected": 0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.signing", description=__doc__)
    parser.add_argument("--results", type=int, default=1000)
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        _child(options.child)
        return 0
    print(json.dumps(count(options.results), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
