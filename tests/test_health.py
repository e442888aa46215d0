"""`/health` is liveness, `/health/ready` follows the store; start-up waits for the store."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from otpserver.http.app import OtpApp
from tests.conftest import MASTER_KEY_TEXT, AppFactory
from tests.support.process import ServerProcess
from tests.support.redis_server import RedisServer, free_port

FLIP_WITHIN_SECONDS = 5.0


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis server of the test's own, which it may stop and start."""
    server = RedisServer()
    server.start()
    yield server
    server.close()


async def test_ready_on_the_memory_store(
    make_app: AppFactory, client_for: Callable[[OtpApp], httpx.AsyncClient]
) -> None:
    """With the memory store, liveness and readiness both answer 200."""
    client = client_for(make_app())
    assert (await client.get("/health")).json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}
    assert (await client.post("/health/ready")).status_code == 404


async def _ready_status(client: httpx.AsyncClient) -> int:
    return (await client.get("/health/ready")).status_code


async def _until(client: httpx.AsyncClient, status: int) -> float:
    """Seconds until `/health/ready` answers `status`; fails after FLIP_WITHIN_SECONDS."""
    started = time.monotonic()
    while await _ready_status(client) != status:
        if time.monotonic() - started > FLIP_WITHIN_SECONDS:
            raise AssertionError(f"/health/ready never answered {status}")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_ready_follows_redis_down_and_up(
    make_app: AppFactory,
    client_for: Callable[[OtpApp], httpx.AsyncClient],
    own_redis: RedisServer,
) -> None:
    """Ready answers 200, then 503 within seconds of Redis stopping while `/health` stays
    200, then 200 again within seconds of Redis starting, with no restart of the app."""
    client = client_for(make_app(store_url=own_redis.url, store_timeout_seconds=0.3))
    assert await _ready_status(client) == 200
    own_redis.stop()
    assert await _until(client, 503) < FLIP_WITHIN_SECONDS
    down = await client.get("/health/ready")
    assert down.json() == {"status": "unavailable", "reason": "STORE:UNAVAILABLE"}
    assert (await client.get("/health")).status_code == 200
    own_redis.start()
    assert await _until(client, 200) < FLIP_WITHIN_SECONDS


async def test_ready_answers_503_within_the_timeout_for_a_frozen_store(
    make_app: AppFactory,
    client_for: Callable[[OtpApp], httpx.AsyncClient],
    own_redis: RedisServer,
) -> None:
    """A store that accepts but never answers makes ready a 503 within its time bound."""
    client = client_for(make_app(store_url=own_redis.url, store_timeout_seconds=0.3))
    assert await _ready_status(client) == 200
    own_redis.pause()
    try:
        started = time.monotonic()
        assert await _ready_status(client) == 503
        assert time.monotonic() - started < 3 * 0.3 + 1.0
    finally:
        own_redis.resume()


@pytest.mark.e2e
def test_start_up_waits_for_a_store_that_comes_up_late() -> None:
    """Started before its Redis, the server says it is waiting, and serves once Redis is up."""
    store = RedisServer()
    server = ServerProcess(
        {
            "OTP_STORE_URL": store.url,
            "OTP_MASTER_KEY": MASTER_KEY_TEXT,
            "OTP_STORE_TIMEOUT_SECONDS": "0.3",
            "OTP_STORE_WAIT_SECONDS": "30",
        }
    )
    server.launch()
    try:
        deadline = time.monotonic() + 20
        while "waiting up to 30 s" not in server.output():
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        store.start()
        server.wait_until_serving()
        assert httpx.get(f"{server.url}/health/ready", timeout=5).status_code == 200
        output = server.output()
        assert "store unavailable: ConnectionError" in output
        assert "store ready after" in output
    finally:
        server.stop()
        store.close()


@pytest.mark.e2e
def test_start_up_gives_up_with_one_clear_line_when_the_store_never_comes() -> None:
    """With no Redis at all, start-up stops after OTP_STORE_WAIT_SECONDS with status 1 and a
    last line naming the variable and the error."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTP_")}
    result = subprocess.run(
        [sys.executable, "-m", "otpserver"],
        env={
            **clean,
            "OTP_ENV": "development",
            "OTP_PORT": str(free_port()),
            "OTP_STORE_URL": f"redis://127.0.0.1:{free_port()}/0",
            "OTP_STORE_TIMEOUT_SECONDS": "0.2",
            "OTP_STORE_WAIT_SECONDS": "1",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "otpserver: the store did not answer within 1 s (OTP_STORE_WAIT_SECONDS)"
    )
    assert "ConnectionError" in last
