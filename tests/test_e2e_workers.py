"""End to end through real processes: two uvicorn workers sharing a real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import MASTER_KEY_TEXT
from tests.support.process import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def two_workers(redis_url: str) -> Iterator[ServerProcess]:
    """The server process with OTP_WORKERS=2 on Redis, stopped after the test."""
    server = ServerProcess(
        {"OTP_WORKERS": "2", "OTP_STORE_URL": redis_url, "OTP_MASTER_KEY": MASTER_KEY_TEXT}
    )
    server.start()
    yield server
    server.stop()


def wait_for_code(server: ServerProcess, address: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        codes = server.codes_for(address)
        if codes:
            return codes[-1]
        time.sleep(0.05)
    raise AssertionError(f"no code printed for {address}:\n{server.output()}")


async def test_twenty_parallel_verifies_of_one_code_succeed_once(
    two_workers: ServerProcess,
) -> None:
    """Twenty concurrent correct verifies, spread over both workers, yield exactly one success."""
    async with httpx.AsyncClient(base_url=two_workers.url) as client:
        created = await client.post("/api/otp/create", json={"email": "race@example.com"})
        assert created.status_code == 200
        cookie = created.cookies["otp"]
        code = wait_for_code(two_workers, "race@example.com")

    async def verify() -> httpx.Response:
        # A fresh connection per request lets the kernel spread them over both workers.
        async with httpx.AsyncClient(base_url=two_workers.url) as own:
            return await own.post(
                "/api/otp/verify", data={"otp": code}, headers={"cookie": f"otp={cookie}"}
            )

    responses = await asyncio.gather(*(verify() for _ in range(20)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1
    assert all(r.json()["error"] == "OTP:INVALID_COOKIE" for r in responses if r.status_code != 200)


def test_process_logs_carry_codes_only_on_the_dev_sender_line(two_workers: ServerProcess) -> None:
    """A real process prints a code only on the dev-sender line, and never a cookie."""
    response = httpx.post(f"{two_workers.url}/api/otp/create", json={"email": "logs@example.com"})
    cookie = response.cookies["otp"]
    code = wait_for_code(two_workers, "logs@example.com")
    httpx.post(
        f"{two_workers.url}/api/otp/verify",
        data={"otp": "000000"},
        headers={"cookie": f"otp={cookie}"},
    )
    output = two_workers.output()
    assert cookie not in output
    assert MASTER_KEY_TEXT not in output
    for line in output.splitlines():
        if code in line:
            assert line == f"otp dev-sender: to=logs@example.com code={code}"


def test_workers_log_like_the_parent(two_workers: ServerProcess) -> None:
    """Each worker is a fresh interpreter; its INFO lines still reach the log, formatted.

    The sixth code for one address in ten minutes is refused, and the worker that refused
    it logs which limit said no (at INFO, which an unconfigured worker would drop).
    """
    statuses = [
        httpx.post(
            f"{two_workers.url}/api/otp/create", json={"email": "limits@example.com"}
        ).status_code
        for _ in range(6)
    ]
    assert statuses == [200] * 5 + [429]
    deadline = time.monotonic() + 5
    line = "INFO otpserver.limits.limiter: rate limited: send refused by credential-sends"
    while line not in two_workers.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert line in two_workers.output()
