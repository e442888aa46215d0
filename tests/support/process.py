"""Run a real server process on loopback and wait until it serves.

By default it is `python -m tests.support.server`, the server composed with the tests' own
hooks (`tests/support/hooks.py`); `module="otpserver"` runs the shipped one.

Its stdout and stderr go to a file, read back for log checks and for the codes the
development sender prints.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.redis_server import free_port

ROOT = Path(__file__).parent.parent.parent


class ServerProcess:
    """A real server process; its stderr is collected into a file for log checks."""

    def __init__(
        self,
        env: dict[str, str],
        port: int | None = None,
        module: str = "tests.support.server",
        ready_path: str = "/health",
    ) -> None:
        # `tests.support.server` serves the tests' own hooks; `otpserver`, the shipped `custom/`;
        # another module (an example application) answers 200 on `ready_path` once serving.
        self.module = module
        self.ready_path = ready_path
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = ROOT / ".pytest_cache" / f"server-{self.port}.log"
        self._log.parent.mkdir(exist_ok=True)
        clean = {k: v for k, v in os.environ.items() if not k.startswith("OTP_")}
        self.env = {
            **clean,
            "OTP_ENV": "development",
            "OTP_HOST": "127.0.0.1",
            "OTP_PORT": str(self.port),
            **env,
        }
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.launch()
        self.wait_until_serving()

    def launch(self) -> None:
        """Start the process without waiting for it (to start several at the same moment)."""
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", self.module],
                env=self.env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_until_serving(self) -> None:
        """Return once `ready_path` answers 200; fail with the process's output if it never does."""
        assert self._process is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}{self.ready_path}", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.output()}")

    @property
    def pid(self) -> int:
        """The server process's id (to constrain it, e.g. its open-file limit)."""
        assert self._process is not None
        return self._process.pid

    @property
    def log_path(self) -> Path:
        """The file the process's stdout and stderr go to."""
        return self._log

    def output(self) -> str:
        return self._log.read_text(errors="replace") if self._log.exists() else ""

    def log(self, last: int = 40) -> str:
        """The last lines the process printed, for failure messages."""
        return "\n".join(self.output().splitlines()[-last:])

    def codes_for(self, address: str) -> list[str]:
        """Codes the development sender printed for `address`, oldest first."""
        prefix = f"otp dev-sender: to={address} code="
        return [
            line[len(prefix) :] for line in self.output().splitlines() if line.startswith(prefix)
        ]

    def wait_for_code(self, address: str, count: int = 1, timeout: float = 10.0) -> str:
        """The `count`-th code sent to `address`, waiting until the process prints it."""
        deadline = time.monotonic() + timeout
        while len(codes := self.codes_for(address)) < count:
            exited = self._process is None or self._process.poll() is not None
            if exited or time.monotonic() > deadline:
                raise AssertionError(f"no code #{count} for {address} in the log:\n{self.log()}")
            time.sleep(0.02)
        return codes[count - 1]

    def stop(self) -> int | None:
        """SIGTERM, SIGKILL if it is still running 15 s later; its exit status (None when it
        was not running)."""
        if self._process is None:
            return None
        self._process.terminate()
        try:
            status = self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            status = self._process.wait()
        self._process = None
        return status

    def wait_for_exit(self, timeout: float = 60) -> int:
        """The exit status of a process that stops by itself."""
        assert self._process is not None
        return self._process.wait(timeout=timeout)
