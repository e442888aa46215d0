"""A store outage is logged twice, when it starts and when it ends, never per request.

A real `python -m otpserver` on a Redis server of its own: Redis is killed, 50 requests are
refused, Redis comes back, and the server's output must hold one start line (with the
error behind it) and one end line counting exactly the requests the client saw refused.
"""

from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.conftest import MASTER_KEY_TEXT
from tests.support.process import ServerProcess
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.e2e

REFUSED = 50


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends() -> None:
    """50 refused creates during an outage give one start line naming the connection error
    and one end line saying how many requests were refused, and nothing per request."""
    store = RedisServer()
    store.start()
    server = ServerProcess(
        {
            "OTP_STORE_URL": store.url,
            "OTP_MASTER_KEY": MASTER_KEY_TEXT,
            "OTP_STORE_TIMEOUT_SECONDS": "0.25",
            "OTP_LIMIT_ADDRESS_REQUESTS": "100000",
            "OTP_LIMIT_CREDENTIAL_SENDS": "100000",
        }
    )
    server.start()
    refused = 0
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:

            def create(i: int) -> int:
                body = {"email": f"user{i}@example.com"}
                return client.post("/api/otp/create", json=body).status_code

            assert create(0) == 200
            store.stop()
            for i in range(REFUSED):
                assert create(i) == 503
                refused += 1
            store.start()
            deadline = time.monotonic() + 10
            while (status := create(REFUSED)) != 200:
                assert status == 503
                refused += 1
                assert time.monotonic() < deadline, server.log()
            assert client.get("/health/ready").status_code == 200
    finally:
        server.stop()
        store.close()

    output = server.output()
    started = [line for line in output.splitlines() if "store unavailable:" in line]
    ended = [line for line in output.splitlines() if "store available again" in line]
    assert len(started) == 1, output
    assert "ConnectionError" in started[0]
    assert len(ended) == 1, output
    match = re.search(r"(\d+) request\(s\) refused", ended[0])
    assert match is not None
    assert int(match.group(1)) == refused
    assert refused >= REFUSED
