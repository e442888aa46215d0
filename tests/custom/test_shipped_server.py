"""`python -m otpserver` with the shipped `custom/`: a code asked for, printed and verified."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.process import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def shipped_server() -> Iterator[ServerProcess]:
    """The real entry point (`python -m otpserver`) in development mode on the memory store."""
    server = ServerProcess({}, module="otpserver")
    server.start()
    yield server
    server.stop()


def test_the_shipped_server_sends_and_verifies_a_code(shipped_server: ServerProcess) -> None:
    """The composition root wires `custom/`: create prints a code, verify answers `final`'s JSON
    with a signed result."""
    with httpx.Client(base_url=shipped_server.url) as client:
        created = client.post("/api/otp/create", json={"email": "Ada@Example.com"})
        assert created.status_code == 200, created.text
        code = shipped_server.wait_for_code("ada@example.com")
        verified = client.post("/api/otp/verify", data={"otp": code})
    assert verified.status_code == 200
    body = verified.json()
    assert body.pop("result").count(".") == 2
    assert body == {"verified": True, "credential": "ada@example.com", "channel": "email"}
