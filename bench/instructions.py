"""Instructions per request, counted by callgrind inside the real server: figures that hold
still on a noisy machine.

Requests per second on a shared virtual machine move by 10-20 % from one run to the next;
the number of instructions a request executes moves by well under 1 %. This phase serves
the OTP application and the bare ceiling exactly as the main phase does (`python -m
otpserver`, `python -m bench.serve bare`, same settings), but each under `valgrind
--tool=callgrind`, and sends requests one at a time over loopback. Per scenario it warms
up, zeroes the counters (`callgrind_control --zero`), sends the requests, and dumps
(`callgrind_control --dump`): the dump's total over the request count is the figure.

What the count covers: every user-space instruction of the server process (uvicorn,
uvloop, the application, the C and Rust libraries), kernel work excluded. What it cannot
say: how fast those instructions run. Live, the OTP path runs at a lower rate than the
ceiling's smaller one (docs/BENCHMARKS.md), so the ratio of instructions comes out above
the ratio of requests per second: it tracks the work, not the speed.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import procs
from bench.harness import (
    API_KEY,
    CODE,
    COOKIE_NAME,
    EXPECTED,
    FLOW_IDENTITIES,
    FLOW_PREFIX,
    WRONG_CODE,
    WRONG_IDENTITIES,
    WRONG_PREFIX,
    Setup,
    enrol_totp,
    next_totp_code,
    server_env,
)
from tests.support.redis_server import free_port

TOOLS = ("valgrind", "callgrind_control")
WARMUP_REQUESTS = 200
DUMP_WAIT_SECONDS = 120.0
START_TIMEOUT_SECONDS = 600.0
"""Python imports everything under valgrind's translation, tens of times slower than native."""


def available() -> bool:
    """Whether valgrind (with its callgrind_control) is installed: `apt-get install valgrind`."""
    return all(shutil.which(tool) is not None for tool in TOOLS)


def dump_total(path: Path) -> int:
    """The instruction total a callgrind dump file records (its `totals:` or `summary:`)."""
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise ValueError(f"{path} holds no totals line")


class Client:
    """One keep-alive HTTP connection, sending requests one at a time, as a browser would."""

    def __init__(self, port: int) -> None:
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        """The status and the `otp` cookie the answer sets ("" when none)."""
        self._connection.request("POST", path, body=body, headers=headers)
        response = self._connection.getresponse()
        response.read()
        cookie = (response.getheader("set-cookie") or "").partition("=")[2].partition(";")[0]
        return response.status, cookie

    def create(self, prefix: str, index: int) -> tuple[int, str]:
        body = json.dumps({"email": f"{prefix}{index}@example.com"}).encode()
        return self.post("/api/otp/create", body, {"Content-Type": "application/json"})

    def verify(self, cookie: str, code: str) -> tuple[int, str]:
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"{COOKIE_NAME}={cookie}",
        }
        return self.post("/api/otp/verify", f"otp={code}".encode(), headers)

    def start_challenge(self, prefix: str, index: int) -> tuple[int, str]:
        """Create a challenge; the status and its token ("" when none)."""
        body = json.dumps({"email": f"{prefix}{index}@example.com"}).encode()
        self._connection.request(
            "POST",
            "/v1/challenges",
            body=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"},
        )
        response = self._connection.getresponse()
        answer = response.read()
        token = json.loads(answer).get("challenge", "") if response.status == 201 else ""
        return response.status, str(token)

    def check_challenge(self, token: str, code: str) -> int:
        body = json.dumps({"challenge": token, "code": code}).encode()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}
        return self.post("/v1/challenges/check", body, headers)[0]

    def api(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """A `/v1` call with the benchmark's key: the status and the decoded answer."""
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}
        self._connection.request("POST", path, body=json.dumps(body).encode(), headers=headers)
        response = self._connection.getresponse()
        answer = json.loads(response.read() or b"{}")
        return response.status, answer if isinstance(answer, dict) else {}

    def close(self) -> None:
        self._connection.close()


class CountedServer:
    """A server process under callgrind, whose counts can be zeroed and dumped at will."""

    def __init__(
        self, name: str, argv: list[str], setup: Setup, store_url: str, log_dir: Path
    ) -> None:
        self.port = free_port()
        self.out_dir = log_dir / f"callgrind-{setup.store}-{name}"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        env = server_env(setup, self.port, store_url)
        # Fixed string hashing, so dictionaries lay out and grow alike from run to run.
        env["PYTHONHASHSEED"] = "0"
        valgrind = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={self.out_dir}/callgrind.%p",
        ]
        self.process = procs.Process(
            f"instructions-{setup.store}-{name}",
            [*valgrind, *argv],
            env,
            log_dir=log_dir,
            cwd=setup.root,
        )

    def start(self) -> None:
        self.process.start()

    def wait_until_serving(self) -> None:
        procs.wait_until_serving(
            self.process, f"http://127.0.0.1:{self.port}/health", START_TIMEOUT_SECONDS
        )

    def _control(self, flag: str) -> None:
        subprocess.run(
            ["callgrind_control", flag, str(self.process.pid)],
            capture_output=True,
            check=True,
            timeout=DUMP_WAIT_SECONDS,
        )

    def zero(self) -> None:
        self._control("--zero")

    def dump(self) -> int:
        """Dump the counts since the last zero and return their instruction total."""
        before = set(self.out_dir.iterdir())
        self._control("--dump")
        deadline = time.monotonic() + DUMP_WAIT_SECONDS
        while time.monotonic() < deadline:
            new = sorted(set(self.out_dir.iterdir()) - before)
            if new:
                try:
                    return dump_total(new[0])
                except ValueError:
                    pass  # still being written
            time.sleep(0.2)
        raise RuntimeError(f"callgrind wrote no dump for {self.process.name}")

    def stop(self) -> None:
        self.process.stop()


@dataclass(frozen=True, slots=True)
class Scenario:
    """Which server answers; `prepare` makes one slot per request unmeasured (a pending
    cookie, or nothing), and `run` sends the measured requests and returns their statuses."""

    server: str
    prepare: Callable[[Client, int], list[str]]
    run: Callable[[Client, list[str]], list[int]]


def _no_preparation(client: Client, requests: int) -> list[str]:
    return [""] * requests


def _pending_cookies(prefix: str, identities: int, what: str) -> Callable[[Client, int], list[str]]:
    """One pending cookie per measured request, spread over many identities like the load
    test's pool (unmeasured preparation)."""

    def prepare(client: Client, requests: int) -> list[str]:
        cookies = []
        for index in range(requests):
            status, cookie = client.create(prefix, index % identities + 1)
            if status != 200:
                raise RuntimeError(f"preparing {what} got {status}")
            cookies.append(cookie)
        return cookies

    return prepare


_wrong_guess_cookies = _pending_cookies(WRONG_PREFIX, WRONG_IDENTITIES, "a wrong-code verify")
# Identities whose code is fixed, so the right code is known without reading a log.
_right_code_cookies = _pending_cookies(FLOW_PREFIX, FLOW_IDENTITIES, "a right-code verify")


def _challenge_tokens(client: Client, requests: int) -> list[str]:
    tokens = []
    for index in range(requests):
        status, token = client.start_challenge(FLOW_PREFIX, index % FLOW_IDENTITIES + 1)
        if status != 201:
            raise RuntimeError(f"preparing a challenge check got {status}")
        tokens.append(token)
    return tokens


def _totp_enrolments(client: Client, requests: int) -> list[str]:
    """One confirmed TOTP enrolment per measured request (enrolling and confirming are not
    measured): a subject, its sealed enrolment and its secret, as one JSON slot."""

    def call(path: str, body: dict[str, Any]) -> dict[str, Any]:
        status, answer = client.api(path, body)
        if status not in (200, 201):
            raise RuntimeError(f"preparing a TOTP verify: {path} answered {status}")
        return answer

    slots = []
    for _ in range(requests):
        subject = f"bench-totp-{os.urandom(8).hex()}"
        secret, enrolment = enrol_totp(call, subject)
        slot = {"subject": subject, "enrolment": enrolment, "secret": secret.hex()}
        slots.append(json.dumps(slot))
    return slots


def _totp_verifies(client: Client, slots: list[str]) -> list[int]:
    """Each enrolment's code of the step after the one its confirmation spent (inside the
    window), so every verify is approved and signs a result; 200 only when approved."""
    statuses = []
    for slot in slots:
        enrolled = json.loads(slot)
        code = next_totp_code(bytes.fromhex(enrolled["secret"]))
        body = {"subject": enrolled["subject"], "enrolment": enrolled["enrolment"], "code": code}
        status, answer = client.api("/v1/totp/verify", body)
        statuses.append(status if answer.get("status") == "approved" else -status)
    return statuses


def _right_verifies(client: Client, cookies: list[str]) -> list[int]:
    return [client.verify(cookie, CODE)[0] for cookie in cookies]


def _challenge_creates(client: Client, slots: list[str]) -> list[int]:
    return [
        client.start_challenge(FLOW_PREFIX, i % FLOW_IDENTITIES + 1)[0] for i in range(len(slots))
    ]


def _challenge_checks(client: Client, tokens: list[str]) -> list[int]:
    return [client.check_challenge(token, CODE) for token in tokens]


def _creates(client: Client, slots: list[str]) -> list[int]:
    return [client.create(FLOW_PREFIX, i % FLOW_IDENTITIES + 1)[0] for i in range(len(slots))]


def _wrong_verifies(client: Client, cookies: list[str]) -> list[int]:
    return [client.verify(cookie, WRONG_CODE)[0] for cookie in cookies]


def _flows(client: Client, slots: list[str]) -> list[int]:
    statuses = []
    for index in range(len(slots)):
        status, cookie = client.create(FLOW_PREFIX, index % FLOW_IDENTITIES + 1)
        statuses += [status, client.verify(cookie, CODE)[0]]
    return statuses


SCENARIOS = {
    "ceiling": Scenario("bare", _no_preparation, _creates),
    "create": Scenario("otp", _no_preparation, _creates),
    "verify_wrong": Scenario("otp", _wrong_guess_cookies, _wrong_verifies),
    "flow": Scenario("otp", _no_preparation, _flows),
    "verify_right": Scenario("otp", _right_code_cookies, _right_verifies),
    "challenge_create": Scenario("otp", _no_preparation, _challenge_creates),
    "challenge_check": Scenario("otp", _challenge_tokens, _challenge_checks),
    "totp_verify": Scenario("otp", _totp_enrolments, _totp_verifies),
}
"""The main phase's scenarios, with the same requests (the ceiling gets the create's), then
the right code alone (its signed result included) and the server-to-server create and check
(a correct code, approved with its result), and a TOTP verify (approved, signed)."""


def count(
    log_dir: Path,
    requests: int,
    *,
    store_url: str = "memory://",
    root: Path = procs.ROOT,
    warmup: int = WARMUP_REQUESTS,
    ceiling: dict[str, Any] | None = None,
    scenarios: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Instructions per request of every scenario, with the ratio of the ceiling's to each.

    With a `redis://` store URL the OTP server keeps its IDs, keys and counters there; only
    the server process is counted, not Redis. The ceiling never touches a store, so a
    `ceiling` row counted already (on the same tree) is reused instead of counted again.
    `scenarios` names the rows to count (the ceiling always), e.g. only those an older tree
    can answer; all of them by default.
    """
    chosen = set(SCENARIOS if scenarios is None else scenarios) | {"ceiling"}
    store = "memory" if store_url.startswith("memory:") else "redis"
    setup = Setup(f"instructions, {store}", store, 1, root=root)
    argv = {"otp": procs.python_argv("-m", "otpserver")}
    if ceiling is None:
        argv["bare"] = procs.python_argv("-m", "bench.serve", "bare")
    servers = {
        name: CountedServer(name, command, setup, store_url, log_dir)
        for name, command in argv.items()
    }
    results: dict[str, Any] = {} if ceiling is None else {"ceiling": dict(ceiling)}
    try:
        for server in servers.values():
            server.start()  # both import under valgrind at once
        for server in servers.values():
            server.wait_until_serving()
        for name, scenario in SCENARIOS.items():
            if name in results or name not in chosen:
                continue
            server = servers[scenario.server]
            client = Client(server.port)
            try:
                scenario.run(client, scenario.prepare(client, warmup))
                slots = scenario.prepare(client, requests)
                server.zero()
                statuses = scenario.run(client, slots)
                total = server.dump()
            finally:
                client.close()
            unexpected = sum(1 for status in statuses if status not in EXPECTED[name])
            results[name] = {
                "requests": len(statuses),
                "instructions_per_request": total / len(statuses),
                "unexpected": unexpected,
            }
    finally:
        for server in servers.values():
            server.stop()
    per_request = results["ceiling"]["instructions_per_request"]
    for name, row in results.items():
        if name != "ceiling":
            row["ratio"] = per_request / row["instructions_per_request"]
    return results
