"""Store outages under mixed traffic, against a real server process (two workers, real Redis).

Several browsers keep creating, resending and verifying while the Redis server is killed
and started again (its data is lost), or frozen and thawed (its data survives, and it runs
what queued up meanwhile). During an outage every request must answer 503
`STORE:UNAVAILABLE` within the configured store timeout, nothing may succeed and nothing may
be sent; afterwards the service must recover by itself, and no cookie from before may gain
a guess or a success.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import MASTER_KEY, MASTER_KEY_TEXT
from tests.support.hygiene import assert_no_leaks, redis_key_material
from tests.support.process import ServerProcess
from tests.support.redis_server import RedisServer
from tests.support.remote import TRUST_LOOPBACK, CodeTail, RemoteBrowser, Seen, timed

pytestmark = pytest.mark.e2e

STORE_TIMEOUT_SECONDS = 0.25
LATENCY_BOUND_SECONDS = 2 * STORE_TIMEOUT_SECONDS + 1.0
"""The store client gives up after twice its timeout; the rest is slack for a busy machine.
Without the timeout a frozen store would hold each request until the client gave up."""
ROUND = 12
"""Requests the traffic makes between two checkpoints."""

# A replayed cookie whose entry is already spent is refused from its content before the store
# is asked (see otpserver.http.browser); any of these answers means "nothing evaluated".
NOTHING_GAINED = {
    "OTP:INVALID_COOKIE",
    "OTP:EXPIRED",
    "OTP:TOO_MANY_ATTEMPTS",
    "OTP:VERIFICATION_NOT_ALLOWED",
    "OTP:RESEND_NOT_ALLOWED",
}


@dataclass(frozen=True)
class Outcome:
    """One request of the traffic: what it was, when it ran, what it got."""

    action: str
    started: float
    ended: float
    status: int
    error: str | None


class Traffic:
    """Browsers that loop create → resend → wrong code → right code, recording every answer."""

    def __init__(self, server: ServerProcess, seen: Seen, browsers: int = 6) -> None:
        self.server = server
        self.seen = seen
        self.codes = CodeTail(server.log_path)
        self.browsers = [
            RemoteBrowser(server.url, f"198.51.100.{100 + i}", seen) for i in range(browsers)
        ]
        self.outcomes: list[Outcome] = []
        self._in_flight: dict[int, float] = {}
        self._changed = asyncio.Event()
        self._stopping = False

    def credential(self, browser: RemoteBrowser) -> str:
        return f"user{browser.address.rpartition('.')[2]}@example.com"

    def latest_code(self, browser: RemoteBrowser) -> str | None:
        return self.codes.code_for(self.credential(browser))

    def sends(self) -> int:
        """Codes the development sender has printed so far."""
        self.codes.refresh()
        return self.codes.count

    async def _loop(self, index: int, browser: RemoteBrowser) -> None:
        steps: list[tuple[str, Callable[[], Awaitable[httpx.Response]]]] = [
            ("create", lambda: browser.create(self.credential(browser))),
            ("resend", browser.resend),
            ("verify-wrong", lambda: browser.verify("000000")),
            ("verify-right", lambda: browser.verify(self.latest_code(browser) or "111111")),
        ]
        for action, step in itertools.cycle(steps):
            if self._stopping:
                return
            if browser.cookie is None and action != "create":
                continue
            started = self._in_flight[index] = time.monotonic()
            try:
                response, took = await timed(step())
            finally:
                del self._in_flight[index]
            error = response.json().get("error") if response.status_code >= 400 else None
            self.outcomes.append(
                Outcome(action, started, started + took, response.status_code, error)
            )
            if error == "OTP:INVALID_COOKIE":
                browser.cookie = None
            self._changed.set()

    async def until(self, requests: int) -> None:
        """Wait until `requests` more answers have come in."""
        target = len(self.outcomes) + requests
        while len(self.outcomes) < target:
            self._changed.clear()
            await self._changed.wait()

    async def quiet_since(self, instant: float) -> None:
        """Wait until every request started before `instant` has been answered."""
        while any(started < instant for started in self._in_flight.values()):
            self._changed.clear()
            await self._changed.wait()

    @staticmethod
    def between(outcomes: list[Outcome], start: float, end: float) -> list[Outcome]:
        return [o for o in outcomes if o.started >= start and o.ended <= end]

    @property
    def stopped(self) -> bool:
        return self._stopping

    async def stop(self) -> None:
        await self.__aexit__()

    async def __aenter__(self) -> Traffic:
        self._tasks = [asyncio.create_task(self._loop(i, b)) for i, b in enumerate(self.browsers)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stopping = True
        await asyncio.gather(*self._tasks)
        self.seen.codes += self.codes.latest.values()


@dataclass
class Outage:
    """The Redis server that fails, the server process, and what the tests saw."""

    redis: RedisServer
    server: ServerProcess
    seen: Seen


@pytest.fixture(scope="module")
def outage() -> Iterator[Outage]:
    """Two workers on a Redis server of their own, with a short store timeout."""
    store = RedisServer()
    store.start()
    server = ServerProcess(
        {
            "OTP_WORKERS": "2",
            "OTP_STORE_URL": store.url,
            "OTP_MASTER_KEY": MASTER_KEY_TEXT,
            "OTP_STORE_TIMEOUT_SECONDS": str(STORE_TIMEOUT_SECONDS),
            "OTP_RESEND_COOLDOWN_SECONDS": "0",
            "OTP_MAX_RESENDS": "100",
            "OTP_LIMIT_CREDENTIAL_SENDS": "100000",
            "OTP_LIMIT_ADDRESS_REQUESTS": "100000",
            "OTP_LIMIT_ADDRESS_VERIFIES": "100000",
            "OTP_LIMIT_MAX_FAILURES": "100",
            **TRUST_LOOPBACK,
        }
    )
    server.start()
    try:
        yield Outage(store, server, Seen())
    finally:
        server.stop()
        store.close()


def assert_failed_closed(outcomes: list[Outcome]) -> None:
    """Every answer is a quick 503 STORE:UNAVAILABLE."""
    assert outcomes, "no request ran inside the outage"
    for outcome in outcomes:
        assert (outcome.status, outcome.error) == (503, "STORE:UNAVAILABLE"), outcome
        assert outcome.ended - outcome.started < LATENCY_BOUND_SECONDS, outcome


async def assert_fresh_sessions_work(outage: Outage, traffic: Traffic, label: str) -> None:
    """New browsers complete a whole flow, whichever worker each request reaches."""
    for i in range(6):
        browser = RemoteBrowser(outage.server.url, f"192.0.2.{i + 1}", outage.seen)
        credential = f"{label}{i}@example.com"
        created = await browser.create(credential)
        assert created.status_code == 200, created.text
        code = traffic.codes.code_for(credential)
        assert code is not None
        verified = await browser.verify(code)
        assert verified.status_code == 200, (label, i, verified.text)
    outage.seen.codes += traffic.codes.latest.values()


async def assert_no_replay_gains(traffic: Traffic) -> None:
    """Replaying any cookie a resend or verify already claimed, with the right code or as a
    resend, evaluates nothing and sends nothing: no earlier cookie gained from the outage."""
    sends = traffic.sends()
    for browser in traffic.browsers:
        code = traffic.latest_code(browser) or "111111"
        for cookie in browser.superseded:
            for response in (
                await browser.verify(code, cookie=cookie),
                await browser.resend(cookie=cookie),
            ):
                assert response.json().get("error") in NOTHING_GAINED, response.text
    assert traffic.sends() == sends


@pytest.fixture
async def traffic(outage: Outage) -> AsyncIterator[Traffic]:
    """Mixed traffic from six browsers; a test stops it with `stop()` before its checks."""
    running = Traffic(outage.server, outage.seen)
    await running.__aenter__()
    await running.until(ROUND)
    yield running
    if not running.stopped:
        await running.__aexit__()


async def ride_out(
    outage: Outage,
    traffic: Traffic,
    interrupt: Callable[[], None],
    restore: Callable[[], None],
    label: str,
) -> None:
    """Interrupt the store under traffic, then restore it, and check both halves: while
    down, every answer fails closed and nothing is sent; once back (after the latency
    bound), no 5xx, fresh sessions work, and no earlier cookie gains anything."""
    interrupt()
    down = time.monotonic()
    await traffic.quiet_since(down)
    sends = traffic.sends()
    await traffic.until(ROUND)
    assert traffic.sends() == sends
    restoring = time.monotonic()
    restore()
    restored = time.monotonic()
    await traffic.until(ROUND)
    await traffic.quiet_since(restored + LATENCY_BOUND_SECONDS)
    await traffic.until(ROUND)
    await traffic.stop()

    assert_failed_closed(Traffic.between(traffic.outcomes, down, restoring))
    after = [o for o in traffic.outcomes if o.started > restored + LATENCY_BOUND_SECONDS]
    assert all(o.status < 500 for o in after), after
    await assert_fresh_sessions_work(outage, traffic, label)
    await assert_no_replay_gains(traffic)


async def test_a_killed_store_fails_closed_and_the_service_recovers(
    outage: Outage, traffic: Traffic
) -> None:
    """Redis killed mid-traffic: quick 503s, no success, no send; restarted: service resumes."""
    await ride_out(outage, traffic, outage.redis.stop, outage.redis.start, "killed")


async def test_a_frozen_store_answers_503_within_the_timeout_and_recovers(
    outage: Outage, traffic: Traffic
) -> None:
    """Redis frozen mid-traffic (no answer at all): 503 within the store timeout, no success,
    no send; thawed, with its queued commands: service resumes, no earlier cookie gains."""
    await ride_out(outage, traffic, outage.redis.pause, outage.redis.resume, "thawed")


def test_the_outage_server_logged_no_secret(outage: Outage) -> None:
    """Everything the workers printed through both outages holds no cookie, code or key."""
    tail = CodeTail(outage.server.log_path)
    tail.refresh()
    secrets = [*outage.seen.secrets(), *tail.latest.values(), MASTER_KEY_TEXT]
    secrets += redis_key_material(outage.redis.url, MASTER_KEY)
    assert_no_leaks(outage.server.output(), secrets)
