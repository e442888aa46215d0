"""Races across processes: one challenge token checked 50 times at once by a backend, on a
server with two workers sharing one real Redis. Only the store's atomic spend stands
between the workers: exactly one check is evaluated, and the rest answer `invalid`."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import MASTER_KEY_TEXT
from tests.support.process import ServerProcess
from tests.support.redis_server import RedisServer, external_redis_url
from tests.support.remote import burst

pytestmark = pytest.mark.e2e

KEY_ID = "racer"
API_KEY = f"otpk_{KEY_ID}_" + "R4c3R4c3R4c3R4c3R4c3R4c3R4c3R4c3"
FIXED_CODE = "246813"
FIXED = "challenge-race@example.com"


@pytest.fixture(scope="module")
def server(redis_server: RedisServer | None) -> Iterator[ServerProcess]:
    """Two workers on an emptied Redis, with limits that only the spend can decide."""
    url = external_redis_url() or (redis_server.url if redis_server else "")
    redis.Redis.from_url(url).flushdb()
    digest = hashlib.sha256(API_KEY.encode()).hexdigest()
    process = ServerProcess(
        {
            "OTP_WORKERS": "2",
            "OTP_STORE_URL": url,
            "OTP_MASTER_KEY": MASTER_KEY_TEXT,
            "OTP_API_KEYS": f"{KEY_ID}:{digest}:challenges",
            "OTP_API_KEY_REQUESTS": "10000",
            "OTP_LIMIT_ADDRESS_VERIFIES": "1000",
            "OTP_LIMIT_MAX_FAILURES": "100",
            "OTP_TEST_CREDENTIALS": f"{FIXED}={FIXED_CODE}",
        }
    )
    process.start()
    yield process
    process.stop()


async def post(server: ServerProcess, path: str, body: dict[str, Any]) -> httpx.Response:
    """One request on a connection of its own, so the kernel may hand it to either worker."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        return await client.post(path, json=body, headers={"Authorization": f"Bearer {API_KEY}"})


@pytest.mark.parametrize("code", [FIXED_CODE, "000000"])
async def test_fifty_checks_of_one_token_evaluate_exactly_one(
    server: ServerProcess, code: str
) -> None:
    """Of 50 parallel checks of one token across two workers, exactly one is evaluated
    (approved for the right code, incorrect for a wrong one); 49 answer invalid."""
    created = await post(server, "/v1/challenges", {"email": FIXED})
    assert created.status_code == 201, created.text
    body = {"challenge": created.json()["challenge"], "code": code}
    responses = await burst(post(server, "/v1/challenges/check", body) for _ in range(50))
    statuses = [r.json()["status"] for r in responses]
    evaluated = "approved" if code == FIXED_CODE else "incorrect"
    assert statuses.count(evaluated) == 1, statuses
    assert statuses.count("invalid") == 49, statuses
