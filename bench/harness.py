"""The measured runs: servers for one setup, scenarios in interleaved rounds, medians and ratios.

A setup is a store, a worker count and a server stack. For each, the OTP server and the
bare ceiling are started side by side with identical settings and CPU pinning, and every
round runs the ceiling and each scenario once, one after the other, so slow drift of a noisy
machine hits them alike; a scenario's ratio is taken within its round, then the median of
rounds is reported.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import procs, workers, wrk
from bench.procs import Process
from otpserver.factors.totp import TotpParameters, step_at, totp
from otpserver.observability.metrics import files_directory
from tests.support.redis_server import free_port

MASTER_KEY = base64.urlsafe_b64encode(bytes(range(32))).rstrip(b"=").decode()
"""Fixed, so every worker seals alike (the development default would be too, per process)."""
CODE = "424242"
WRONG_CODE = "000000"
COOKIE_NAME = "otp"
FLOW_PREFIX, FLOW_IDENTITIES = "a", 1000
WRONG_PREFIX, WRONG_IDENTITIES = "w", 2500
"""Wrong guesses are spread over this many credentials: each takes at most 100 before its
lockout (NIST caps `OTP_LIMIT_MAX_FAILURES` there), so these allow 250 000 per server."""
UNLIMITED = "1000000000"
LIMITS_ENV = {
    "OTP_LIMIT_ADDRESS_REQUESTS": UNLIMITED,
    "OTP_LIMIT_ADDRESS_VERIFIES": UNLIMITED,
    "OTP_LIMIT_CREDENTIAL_SENDS": UNLIMITED,
    "OTP_LIMIT_CHANNEL_SENDS_PER_HOUR": f"email={UNLIMITED},*={UNLIMITED}",
    "OTP_LIMIT_MAX_FAILURES": "100",
    # One load generator is one network: the per-network limits would stop it too.
    "OTP_LIMIT_NETWORK_REQUESTS": UNLIMITED,
    "OTP_LIMIT_NETWORK_VERIFIES": UNLIMITED,
    "OTP_LIMIT_NETWORK_BUDGET_PERCENT": "100",
}
SCENARIOS = ("ceiling", "create", "verify_wrong", "flow", "challenge_flow")
EXPECTED = {
    "ceiling": {200},
    "create": {200},
    "verify_wrong": {403},
    "flow": {200},
    "verify_right": {200},
    "challenge_create": {201},
    "challenge_check": {200},
    "totp_verify": {200},
    "challenge_flow": {200, 201},
}
API_KEY = "otpk_bench_" + "B3nchB3nchB3nchB3nchB3nchB3nchB3"
"""The key the server-to-server scenarios call with (scopes `challenges`, `totp` and
`backup_codes`)."""


@dataclass(frozen=True, slots=True)
class Options:
    """How long and how hard each run drives the server."""

    seconds: float = 4.0
    rounds: int = 5
    connections: int = 16
    warmup_seconds: float = 1.0
    pool_factor: float = 1.0
    """Cookies for the wrong-code scenario are made for this many times a run's length; the
    harness lengthens it whenever a run used most of its pool."""


@dataclass(frozen=True, slots=True)
class Setup:
    """What is served: store, workers and stack; optional pre-filled live sessions."""

    name: str
    store: str
    workers: int
    stack: str = "default"
    live_sessions: int = 0
    extra_env: Mapping[str, str] = field(default_factory=dict)
    root: Path = procs.ROOT
    """The source tree served (another checkout, for before/after comparisons)."""


@dataclass(frozen=True, slots=True)
class Pinning:
    """Which CPUs the servers and the load generator (with Redis) may use; None = all."""

    server: set[int] | None
    client: set[int] | None

    @classmethod
    def for_workers(cls, workers: int) -> Pinning:
        cpus = sorted(os.sched_getaffinity(0))
        if workers == 1 and len(cpus) >= 2:
            # One worker gets a core to itself; wrk and Redis share the other.
            return cls(server={cpus[1]}, client={cpus[0]})
        return cls(server=None, client=None)


@dataclass(slots=True)
class Run:
    """One scenario run, with the server's CPU time and the load generator's."""

    scenario: str
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_ms_per_request: float
    client_cpu_share: float
    requests: int
    unexpected: int
    statuses: dict[int, int]
    redis_cpu_ms_per_request: float | None = None
    flows_per_second: float | None = None
    ratio: float | None = None
    background_cpu_share: float = 0.0
    worker_requests: dict[str, int] | None = None
    """Requests each worker served, by process id: with several workers, for the scenarios
    the server counts (`bench.workers`)."""


def identities(prefix: str, count: int) -> str:
    return ",".join(f"{prefix}{i}@example.com={CODE}" for i in range(1, count + 1))


def server_env(setup: Setup, port: int, store_url: str) -> dict[str, str]:
    """The environment of both servers of a setup: the same `OTP_*` settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTP_", "BENCH_"))}
    return {
        **clean,
        "PYTHONPATH": str(setup.root),
        "OTP_ENV": "development",
        "OTP_HOST": "127.0.0.1",
        "OTP_PORT": str(port),
        "OTP_WORKERS": str(setup.workers),
        "OTP_STORE_URL": store_url,
        "OTP_MASTER_KEY": MASTER_KEY,
        "OTP_TEST_CREDENTIALS": identities(FLOW_PREFIX, FLOW_IDENTITIES)
        + ","
        + identities(WRONG_PREFIX, WRONG_IDENTITIES),
        "OTP_API_KEYS": f"bench:{hashlib.sha256(API_KEY.encode()).hexdigest()}:"
        + "challenges+totp+backup_codes+devices",
        "OTP_API_KEY_REQUESTS": UNLIMITED,
        **LIMITS_ENV,
        **setup.extra_env,
    }


class Servers:
    """The OTP server and the ceiling of one setup, started and stopped together."""

    def __init__(
        self,
        setup: Setup,
        store_url: str,
        pinning: Pinning,
        log_dir: Path,
        *,
        with_ceiling: bool = True,
    ) -> None:
        self.setup = setup
        self.with_ceiling = with_ceiling
        self.pinning = pinning
        self.report_path = log_dir / f"{slug(setup.name)}-prefill.json"
        otp_port, bare_port = free_port(), free_port()
        self.otp_url = f"http://127.0.0.1:{otp_port}"
        self.bare_url = f"http://127.0.0.1:{bare_port}"
        otp_env = server_env(setup, otp_port, store_url)
        if setup.stack == "default" and not setup.live_sessions:
            otp_argv = procs.python_argv("-m", "otpserver")
        else:
            otp_argv = procs.python_argv("-m", "bench.serve", "otp", "--stack", setup.stack)
        if setup.live_sessions:
            otp_env["BENCH_LIVE_SESSIONS"] = str(setup.live_sessions)
            otp_env["BENCH_REPORT"] = str(self.report_path)
        self.metrics_directory: Path | None = None
        if setup.workers > 1 and setup.stack == "default":
            # The metrics listener makes each worker count in a file of its own.
            metrics_port = free_port()
            otp_env["OTP_METRICS_PORT"] = str(metrics_port)
            self.metrics_directory = files_directory(metrics_port)
        self.otp = Process(
            f"{slug(setup.name)}-otp",
            otp_argv,
            otp_env,
            pinning.server,
            log_dir=log_dir,
            cwd=setup.root,
        )
        self.bare = Process(
            f"{slug(setup.name)}-bare",
            procs.python_argv("-m", "bench.serve", "bare", "--stack", setup.stack),
            server_env(setup, bare_port, store_url),
            pinning.server,
            log_dir=log_dir,
        )

    def start(self) -> None:
        self.otp.start()
        if self.with_ceiling:
            self.bare.start()
        procs.wait_until_serving(self.otp, f"{self.otp_url}/health", timeout_seconds=180)
        if self.with_ceiling:
            procs.wait_until_serving(self.bare, f"{self.bare_url}/health")
        if self.setup.workers > 1 and self.setup.stack == "default":
            urls = [self.otp_url, *([self.bare_url] if self.with_ceiling else [])]
            for url in urls:
                workers.wait_until_listening(int(url.rpartition(":")[2]), self.setup.workers)

    def worker_requests(self) -> dict[int, int] | None:
        """Requests each OTP worker has counted so far, when it counts per worker."""
        if self.metrics_directory is None:
            return None
        return workers.requests_per_worker(self.metrics_directory)

    def stop(self) -> None:
        self.otp.stop()
        self.bare.stop()

    def prefill_report(self) -> dict[str, Any] | None:
        if not self.report_path.exists():
            return None
        data: dict[str, Any] = json.loads(self.report_path.read_text())
        return data


def setup_data(setup: Setup) -> dict[str, Any]:
    return asdict(setup) | {"extra_env": dict(setup.extra_env), "root": str(setup.root)}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


class Driver:
    """Runs scenarios against one setup's servers and accounts CPU per request."""

    def __init__(
        self, servers: Servers, options: Options, redis_pid: int | None, scratch: Path
    ) -> None:
        self.servers = servers
        self.options = options
        self.redis_pid = redis_pid
        self.scratch = scratch
        self.pool_offset = 0
        self.pool_seconds = options.seconds * options.pool_factor
        self.pool_size = 0

    def _load(self, url: str, lua: str, args: list[str], seconds: float) -> wrk.LoadResult:
        return wrk.run(
            url,
            lua,
            args,
            seconds=seconds,
            connections=self.options.connections,
            cpus=self.servers.pinning.client,
        )

    def fill_pool(self, seconds: float) -> Path:
        """Pending cookies for the wrong-code scenario, each for one of the wrong identities."""
        path = self.scratch / f"pool-{time.monotonic_ns()}.txt"
        result = self._load(
            self.servers.otp_url,
            "pool",
            [WRONG_PREFIX, str(WRONG_IDENTITIES), str(path), str(self.pool_offset)],
            seconds,
        )
        self.pool_offset = (self.pool_offset + result.requests) % WRONG_IDENTITIES
        self.pool_size = len(path.read_text().split()) if path.exists() else 0
        return path

    def measure(self, scenario: str, seconds: float, pool_seconds: float | None = None) -> Run:
        """One run of `scenario`; the wrong-code one first fills its cookie pool (unmeasured)
        and is run again with a larger pool if it ran out (its cookie-less 400s would be
        measured instead of verifications)."""
        run = self._measure_once(scenario, seconds, pool_seconds)
        for _ in range(2):
            if scenario != "verify_wrong" or not run.statuses.get(400):
                break
            self.pool_seconds = min(self.pool_seconds * 2, 8 * self.options.seconds)
            run = self._measure_once(scenario, seconds, None)
        return run

    def _measure_once(self, scenario: str, seconds: float, pool_seconds: float | None) -> Run:
        server = self.servers.bare if scenario == "ceiling" else self.servers.otp
        url = self.servers.bare_url if scenario == "ceiling" else self.servers.otp_url
        if scenario in ("ceiling", "create"):
            lua, args = "create", [FLOW_PREFIX, str(FLOW_IDENTITIES)]
        elif scenario == "flow":
            lua, args = "flow", [FLOW_PREFIX, str(FLOW_IDENTITIES), COOKIE_NAME, CODE]
        elif scenario == "challenge_flow":
            lua, args = "challenge_flow", [FLOW_PREFIX, str(FLOW_IDENTITIES), API_KEY, CODE]
        else:
            fill_seconds = pool_seconds or self.pool_seconds
            pool = self.fill_pool(fill_seconds)
            lua, args = "verify_wrong", [str(pool), COOKIE_NAME, WRONG_CODE]
        counted = None if scenario == "ceiling" else self.servers.worker_requests()
        cpu_before = procs.cpu_seconds(server.pid)
        redis_before = procs.cpu_seconds(self.redis_pid) if self.redis_pid else 0.0
        busy_before = procs.machine_busy_seconds()
        result = self._load(url, lua, args, seconds)
        busy = procs.machine_busy_seconds() - busy_before
        counted_after = None if counted is None else self.servers.worker_requests()
        cpu = procs.cpu_seconds(server.pid) - cpu_before
        redis_cpu = procs.cpu_seconds(self.redis_pid) - redis_before if self.redis_pid else None
        if scenario == "verify_wrong":
            self._size_next_pool(result, fill_seconds, seconds)
        requests = max(1, result.requests)
        # CPU the machine spent on anything but this run: other workloads sharing it.
        ours = cpu + result.client_cpu_seconds + (redis_cpu or 0.0)
        capacity = procs.cpu_count() * result.seconds
        background = max(0.0, busy - ours) / capacity if capacity else 0.0
        verified = result.extra.get("verified")
        return Run(
            scenario=scenario,
            rps=result.rps,
            p50_ms=result.p50_ms,
            p99_ms=result.p99_ms,
            max_ms=result.max_ms,
            server_cpu_ms_per_request=cpu * 1000 / requests,
            client_cpu_share=result.client_cpu_seconds / result.seconds if result.seconds else 0,
            requests=result.requests,
            unexpected=result.unexpected(EXPECTED[scenario]),
            statuses=result.statuses,
            redis_cpu_ms_per_request=None if redis_cpu is None else redis_cpu * 1000 / requests,
            flows_per_second=None if verified is None else verified / result.seconds,
            background_cpu_share=background,
            worker_requests=(
                None
                if counted is None or counted_after is None
                else workers.served_between(counted, counted_after)
            ),
        )

    def _size_next_pool(self, result: wrk.LoadResult, fill_seconds: float, seconds: float) -> None:
        """Fill long enough that the next run uses at most half its pool: the rate it
        consumed cookies at, over the rate the fill made them (each cookie serves two). A
        run can be much faster than the last on a noisy machine (one with two workers on
        Redis once ran out at a 70 % target), hence the wide margin."""
        used = result.extra.get("pool_used", 0) + result.extra.get("pool_exhausted", 0)
        if not self.pool_size or not result.seconds:
            self.pool_seconds *= 2
            return
        consumed_per_second = used / result.seconds
        made_per_second = self.pool_size / fill_seconds
        needed = seconds * consumed_per_second / made_per_second / 0.5
        floor = self.options.seconds * self.options.pool_factor * 0.5
        self.pool_seconds = min(max(needed, floor), 4 * self.options.seconds)

    def warm_up(self, scenarios: tuple[str, ...]) -> None:
        """Unmeasured runs: imports, caches, connection pools and the JIT of wrk's Lua."""
        seconds = self.options.warmup_seconds
        if seconds <= 0:
            return
        for scenario in scenarios:
            self.measure(scenario, seconds, pool_seconds=seconds)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(runs: dict[str, list[Run]]) -> dict[str, dict[str, Any]]:
    """Median of each figure over the rounds; ratios were taken within each round."""
    summary: dict[str, dict[str, Any]] = {}
    for scenario, scenario_runs in runs.items():
        if not scenario_runs:
            continue
        row: dict[str, Any] = {
            "rps": median([r.rps for r in scenario_runs]),
            "rps_min": min(r.rps for r in scenario_runs),
            "rps_max": max(r.rps for r in scenario_runs),
            "p50_ms": median([r.p50_ms for r in scenario_runs]),
            "p99_ms": median([r.p99_ms for r in scenario_runs]),
            "max_ms": max(r.max_ms for r in scenario_runs),
            "server_cpu_ms_per_request": median(
                [r.server_cpu_ms_per_request for r in scenario_runs]
            ),
            "client_cpu_share": median([r.client_cpu_share for r in scenario_runs]),
            "background_cpu_share": median([r.background_cpu_share for r in scenario_runs]),
            "unexpected": sum(r.unexpected for r in scenario_runs),
            "requests": sum(r.requests for r in scenario_runs),
            "rounds": len(scenario_runs),
        }
        ratios = [r.ratio for r in scenario_runs if r.ratio is not None]
        if ratios:
            row["ratio"] = median(ratios)
        redis = [r.redis_cpu_ms_per_request for r in scenario_runs]
        if all(x is not None for x in redis):
            row["redis_cpu_ms_per_request"] = median([x for x in redis if x is not None])
        flows = [r.flows_per_second for r in scenario_runs]
        if all(x is not None for x in flows):
            row["flows_per_second"] = median([x for x in flows if x is not None])
        per_worker = [r.worker_requests for r in scenario_runs if r.worker_requests is not None]
        if per_worker:
            served: dict[str, int] = {}
            for run_counts in per_worker:
                for pid, count in run_counts.items():
                    served[pid] = served.get(pid, 0) + count
            row["worker_requests"] = served
            total = sum(served.values())
            row["busiest_worker_share"] = max(served.values()) / total if total else None
        summary[scenario] = row
    return summary


@contextmanager
def scratch_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="otp-bench-") as name:
        yield Path(name)


def run_setup(
    setup: Setup,
    options: Options,
    scenarios: tuple[str, ...],
    store_url: str,
    log_dir: Path,
    redis_pid: int | None = None,
    on_round: Any = None,
) -> dict[str, Any]:
    """Start the setup's servers, warm up, run the rounds; the results as plain data."""
    pinning = Pinning.for_workers(setup.workers)
    if redis_pid is not None:
        procs.pin_all_threads(redis_pid, pinning.client or set(os.sched_getaffinity(0)))
    servers = Servers(setup, store_url, pinning, log_dir)
    runs: dict[str, list[Run]] = {s: [] for s in scenarios}
    started = time.time()
    servers.start()
    try:
        with scratch_dir() as scratch:
            driver = Driver(servers, options, redis_pid, scratch)
            driver.warm_up(scenarios)
            for round_number in range(options.rounds):
                ceiling: Run | None = None
                for scenario in scenarios:
                    run = driver.measure(scenario, options.seconds)
                    if scenario == "ceiling":
                        ceiling = run
                    elif ceiling is not None and ceiling.rps:
                        run.ratio = run.rps / ceiling.rps
                    runs[scenario].append(run)
                if on_round is not None:
                    on_round(setup, round_number, runs)
            rss = procs.rss_bytes(servers.otp.pid)
    finally:
        servers.stop()
    return {
        "setup": setup_data(setup),
        "pinning": {
            "server": sorted(pinning.server) if pinning.server else "all",
            "client": sorted(pinning.client) if pinning.client else "all",
        },
        "started_at": started,
        "seconds": time.time() - started,
        "otp_rss_bytes": rss,
        "prefill": servers.prefill_report(),
        "runs": {s: [asdict(r) for r in rs] for s, rs in runs.items()},
        "summary": summarize(runs),
    }


def run_side_by_side(
    all_servers: list[Servers],
    options: Options,
    scenarios: tuple[str, ...],
    redis_pid: int | None = None,
    before_each_run: Callable[[], None] | None = None,
) -> tuple[list[dict[str, list[Run]]], list[int]]:
    """Several OTP servers up at once, rounds interleaved across them so drift hits all
    alike; each run's ratio is to the first server's in the same round. The runs per
    server, and each server's resident memory at the end. `before_each_run` is called,
    unmeasured, before every run (a shared store's limit counters are cleared there)."""
    runs: list[dict[str, list[Run]]] = [{s: [] for s in scenarios} for _ in all_servers]
    try:
        for servers in all_servers:
            servers.start()
        with scratch_dir() as scratch:
            drivers = [Driver(s, options, redis_pid, scratch) for s in all_servers]
            for driver in drivers:
                driver.warm_up(scenarios)
            for _ in range(options.rounds):
                for scenario in scenarios:
                    baseline: Run | None = None
                    for index, driver in enumerate(drivers):
                        if before_each_run is not None:
                            before_each_run()
                        run = driver.measure(scenario, options.seconds)
                        if baseline is None:
                            baseline = run
                        run.ratio = run.rps / baseline.rps if baseline.rps else None
                        runs[index][scenario].append(run)
        rss = [procs.rss_bytes(s.otp.pid) for s in all_servers]
    finally:
        for servers in all_servers:
            servers.stop()
    return runs, rss


def run_scaling(
    levels: tuple[int, ...],
    options: Options,
    scenarios: tuple[str, ...],
    log_dir: Path,
    extra_env: Mapping[str, str],
) -> dict[str, Any]:
    """One memory-store server per level of pre-filled live sessions; each level's ratio is
    to the empty store in the same round."""
    pinning = Pinning.for_workers(1)
    setups = [
        Setup(f"scaling {n} live", "memory", 1, live_sessions=n, extra_env=extra_env)
        for n in levels
    ]
    all_servers = [Servers(s, "memory://", pinning, log_dir, with_ceiling=False) for s in setups]
    started = time.time()
    runs, rss = run_side_by_side(all_servers, options, scenarios)
    return {
        "started_at": started,
        "seconds": time.time() - started,
        "levels": [
            {
                "live_sessions": level,
                "prefill": servers.prefill_report(),
                "otp_rss_bytes_after": rss_after,
                "runs": {s: [asdict(r) for r in rs] for s, rs in level_runs.items()},
                "summary": summarize(level_runs),
            }
            for level, servers, level_runs, rss_after in zip(
                levels, all_servers, runs, rss, strict=True
            )
        ],
    }


def run_comparison(
    setups: list[Setup],
    options: Options,
    scenarios: tuple[str, ...],
    store_url: str,
    log_dir: Path,
    redis_pid: int | None = None,
    before_each_run: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Before/after: the setups' OTP servers (e.g. two source trees) side by side; each
    setup's ratio is to the first one in the same round."""
    pinning = Pinning.for_workers(setups[0].workers)
    if redis_pid is not None:
        procs.pin_all_threads(redis_pid, pinning.client or set(os.sched_getaffinity(0)))
    all_servers = [Servers(s, store_url, pinning, log_dir, with_ceiling=False) for s in setups]
    started = time.time()
    runs, _ = run_side_by_side(all_servers, options, scenarios, redis_pid, before_each_run)
    return {
        "started_at": started,
        "seconds": time.time() - started,
        "setups": [
            {
                "setup": setup_data(setup),
                "prefill": servers.prefill_report(),
                "runs": {s: [asdict(r) for r in rs] for s, rs in setup_runs.items()},
                "summary": summarize(setup_runs),
            }
            for setup, setup_runs, servers in zip(setups, runs, all_servers, strict=True)
        ],
    }


ApiCall = Callable[[str, dict[str, Any]], dict[str, Any]]
"""A `/v1` POST with the benchmark's key: the decoded answer (raising on an HTTP error)."""


def enrol_totp(
    call: ApiCall, subject: str, before_confirm: Callable[[], object] = lambda: None
) -> tuple[bytes, str]:
    """Enrol `subject` in TOTP and confirm it with the current code, as a host would: the
    secret and the sealed enrolment. `before_confirm` runs between the two calls (where a
    harness marks the confirmation as the request it counts)."""
    started = call("/v1/totp/enrolments", {"subject": subject, "account": "a@example.com"})
    secret = base64.b32decode(started["secret"] + "=" * (-len(started["secret"]) % 8))
    code = totp(secret, time.time(), TotpParameters())
    before_confirm()
    body = {"subject": subject, "pending": started["pending"], "code": code}
    confirmed = call("/v1/totp/enrolments/confirm", body)
    if confirmed.get("status") != "approved":
        raise RuntimeError(f"confirming a TOTP enrolment answered {confirmed}")
    return secret, str(confirmed["enrolment"])


def next_totp_code(secret: bytes) -> str:
    """The code of the step after the current one: still inside the verification window,
    and never the step a confirmation just spent, so a verify with it is approved."""
    parameters = TotpParameters()
    step = step_at(time.time(), parameters.period) + 1
    return totp(secret, step * parameters.period, parameters)
