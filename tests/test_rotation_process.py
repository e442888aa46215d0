"""Master-key rotation on real server processes sharing a real Redis: a rolling restart with
cookies in flight, with and without `OTP_MASTER_KEY_PREVIOUS`, never answers 5xx."""

from __future__ import annotations

import base64

import httpx
import pytest

from otpserver.v1.keys import new_key
from tests.conftest import MASTER_KEY_TEXT
from tests.support.process import ServerProcess
from tests.support.remote import RemoteBrowser

pytestmark = pytest.mark.e2e

NEW_KEY_TEXT = base64.urlsafe_b64encode(bytes(range(200, 232))).rstrip(b"=").decode()
NEWEST_KEY_TEXT = base64.urlsafe_b64encode(bytes(range(100, 132))).rstrip(b"=").decode()
API_KEY, API_KEY_LINE = new_key("shop", ["challenges"])
BEARER = {"authorization": f"Bearer {API_KEY}"}


async def challenges(on: ServerProcess, tag: str, count: int) -> list[tuple[str, str]]:
    """Challenge tokens started on `on` through `/v1`, and their codes."""
    found = []
    async with httpx.AsyncClient(base_url=on.url, headers=BEARER) as client:
        for i in range(count):
            address = f"{tag}{i}@example.com"
            started = await client.post("/v1/challenges", json={"email": address})
            assert started.status_code == 201, started.text
            found.append((started.json()["challenge"], on.wait_for_code(address)))
    return found


async def check_on(on: ServerProcess, tokens: list[tuple[str, str]]) -> list[tuple[int, str]]:
    """(HTTP status, outcome) of checking each token's code on `on`."""
    answers = []
    async with httpx.AsyncClient(base_url=on.url, headers=BEARER) as client:
        for token, code in tokens:
            checked = await client.post(
                "/v1/challenges/check", json={"challenge": token, "code": code}
            )
            answers.append((checked.status_code, checked.json().get("status", "")))
    return answers


def server(redis_url: str, key: str, previous: str = "") -> ServerProcess:
    """A started server on the shared Redis with `key` (and `previous`) as master keys."""
    process = ServerProcess(
        {
            "OTP_STORE_URL": redis_url,
            "OTP_MASTER_KEY": key,
            "OTP_MASTER_KEY_PREVIOUS": previous,
            "OTP_ISSUER": "https://otp.test",
            "OTP_API_KEYS": API_KEY_LINE,
        }
    )
    process.start()
    return process


async def pending(on: ServerProcess, tag: str, count: int) -> list[tuple[RemoteBrowser, str]]:
    """Browsers with a code pending on `on`, and their codes."""
    found = []
    for i in range(count):
        browser = RemoteBrowser(on.url, "127.0.0.1")
        address = f"{tag}{i}@example.com"
        assert (await browser.create(address)).status_code == 200
        found.append((browser, on.wait_for_code(address)))
    return found


async def new_code_works(on: ServerProcess, address: str) -> list[int]:
    """Statuses of a create and a verify of a fresh code on `on`."""
    browser = RemoteBrowser(on.url, "127.0.0.1")
    created = await browser.create(address)
    code = on.wait_for_code(address)
    return [created.status_code, (await browser.verify(code)).status_code]


async def verify_on(on: ServerProcess, browsers: list[tuple[RemoteBrowser, str]]) -> list[int]:
    statuses = []
    for browser, code in browsers:
        browser.base_url = on.url
        statuses.append((await browser.verify(code)).status_code)
    return statuses


async def test_rolling_rotations_never_answer_5xx(redis_url: str) -> None:
    """Two instances rotate one at a time: with the previous key every pending cookie,
    challenge token and new code verifies (zero errors); then, dropping it, old cookies
    answer OTP:INVALID_COOKIE and old tokens `invalid`, new codes work at once, and no
    answer at any point is a 5xx."""
    running = [server(redis_url, MASTER_KEY_TEXT), server(redis_url, MASTER_KEY_TEXT)]
    try:
        in_flight = await pending(running[0], "a", 3) + await pending(running[1], "b", 3)
        tokens = await challenges(running[0], "ta", 2) + await challenges(running[1], "tb", 2)

        # Rotation with the previous key: restart one instance, then the other.
        running[0].stop()
        running[0] = server(redis_url, NEW_KEY_TEXT, previous=MASTER_KEY_TEXT)
        statuses = await verify_on(running[0], in_flight[:3])
        statuses += await new_code_works(running[0], "c0@example.com")
        statuses += await new_code_works(running[1], "c1@example.com")
        running[1].stop()
        running[1] = server(redis_url, NEW_KEY_TEXT, previous=MASTER_KEY_TEXT)
        statuses += await verify_on(running[1], in_flight[3:])
        statuses += await new_code_works(running[1], "c2@example.com")
        assert statuses == [200] * len(statuses)
        assert await check_on(running[1], tokens) == [(200, "approved")] * 4

        # Rotation without the previous key.
        in_flight = await pending(running[0], "d", 2) + await pending(running[1], "e", 2)
        tokens = await challenges(running[0], "td", 2)
        running[0].stop()
        running[0] = server(redis_url, NEWEST_KEY_TEXT)
        lost = await verify_on(running[0], in_flight[:2])
        fresh = await new_code_works(running[0], "f0@example.com")
        during = await new_code_works(running[1], "f1@example.com")
        running[1].stop()
        running[1] = server(redis_url, NEWEST_KEY_TEXT)
        lost += await verify_on(running[1], in_flight[2:])
        fresh += await new_code_works(running[1], "f2@example.com")
        fresh += await new_code_works(running[0], "f3@example.com")
        assert lost == [400] * 4
        assert await check_on(running[0], tokens) == [(200, "invalid")] * 2
        assert [
            s for s, _ in await check_on(running[1], await challenges(running[1], "tf", 1))
        ] == [200]
        assert fresh == [200] * len(fresh)
        assert all(status < 500 for status in during)
        async with httpx.AsyncClient(base_url=running[1].url) as client:
            keys = (await client.get("/.well-known/jwks.json")).json()["keys"]
        assert len(keys) == 3
    finally:
        for process in running:
            process.stop()
    for process in running:
        assert "Traceback" not in process.output()
