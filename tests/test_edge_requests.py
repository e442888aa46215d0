"""What the edge refuses before any route runs: absurd Content-Length values, foreign Host
names in development, and a trusted-proxy list that trusts everyone (SECURITY.md 47, 54)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from otpserver.errors import ConfigError
from otpserver.http.app import OtpApp
from otpserver.http.hosts import exposure_warning
from otpserver.settings.environment import Settings
from tests.conftest import AppFactory


@pytest.mark.parametrize(
    "declared", ["9" * 5000, "1" + "0" * 30, "+12", "12abc", "0x10", "-1", " "]
)
async def test_an_absurd_or_malformed_content_length_is_a_400(
    client: httpx.AsyncClient, declared: str
) -> None:
    """A Content-Length that is not a plain decimal of sane length is refused as 400, never
    a 500 (Python refuses to parse integers of thousands of digits)."""
    response = await client.post(
        "/api/otp/create",
        content=b"{}",
        headers={"content-type": "application/json", "content-length": declared},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "BODY:INVALID"


async def test_a_large_but_plain_content_length_is_still_a_413(client: httpx.AsyncClient) -> None:
    """A well-formed length over the limit keeps its own answer."""
    response = await client.post(
        "/api/otp/create",
        content=b"{}",
        headers={"content-type": "application/json", "content-length": "999999999"},
    )
    assert response.status_code == 413


@pytest.fixture
async def dev_app(make_app: AppFactory) -> OtpApp:
    """A development app with the outbox, as `python -m otpserver` runs it locally."""
    return make_app(env="development", real_sender=True)


@pytest.fixture
async def clients() -> AsyncIterator[list[httpx.AsyncClient]]:
    made: list[httpx.AsyncClient] = []
    yield made
    for client in made:
        await client.aclose()


def client_at(app: OtpApp, base_url: str, made: list[httpx.AsyncClient]) -> httpx.AsyncClient:
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 40000)), base_url=base_url
    )
    made.append(client)
    return client


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8000", "127.0.0.2:8000", "localhost.evil.example"]
)
async def test_development_refuses_foreign_host_names(
    dev_app: OtpApp, clients: list[httpx.AsyncClient], host: str
) -> None:
    """A rebinding domain (any name but the loopback ones) cannot read the outbox or use
    the API of a development server."""
    client = client_at(dev_app, "http://localhost:8000", clients)
    for request in (
        client.get("/dev/outbox", headers={"host": host}),
        client.post("/api/otp/create", json={"email": "a@example.com"}, headers={"host": host}),
    ):
        response = await request
        assert response.status_code == 400
        assert response.json()["error"] == "HOST:NOT_ALLOWED"
        assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "base_url",
    ["http://localhost:8000", "http://127.0.0.1:8000", "http://[::1]:8000", "http://LOCALHOST"],
)
async def test_development_answers_the_loopback_names(
    dev_app: OtpApp, clients: list[httpx.AsyncClient], base_url: str
) -> None:
    """localhost, 127.0.0.1 and [::1], with or without a port, are served."""
    response = await client_at(dev_app, base_url, clients).get("/dev/outbox")
    assert response.status_code == 200


async def test_production_serves_any_host_name(client: httpx.AsyncClient) -> None:
    """The Host check is for development only: production is reached by its own names."""
    assert (await client.get("/health")).status_code == 200


@pytest.mark.parametrize(
    "proxies", ["0.0.0.0/0", "10.0.0.1, ::/0", "0.0.0.0/1,128.0.0.0/1", "::/1, 8000::/1"]
)
def test_trusted_proxies_covering_every_address_are_refused(proxies: str) -> None:
    """A proxy list that covers all of IPv4 or IPv6 would believe any client's header."""
    with pytest.raises(ConfigError, match="OTP_TRUSTED_PROXIES"):
        Settings.from_env({"OTP_TRUSTED_PROXIES": proxies})


def test_wide_but_not_total_proxy_lists_are_accepted() -> None:
    """Private ranges and half of the space are allowed (a deliberate choice)."""
    settings = Settings.from_env({"OTP_TRUSTED_PROXIES": "10.0.0.0/8,fc00::/7,0.0.0.0/1"})
    assert len(settings.trusted_proxies.networks) == 3


@pytest.mark.parametrize(
    ("env", "host", "warned"),
    [
        ("development", "0.0.0.0", True),
        ("development", "::", True),
        ("development", "192.0.2.10", True),
        ("development", "127.0.0.1", False),
        ("development", "::1", False),
        ("development", "localhost", False),
        ("production", "0.0.0.0", False),
    ],
)
def test_development_bound_beyond_loopback_warns(env: str, host: str, warned: bool) -> None:
    """Development listening on a non-loopback address gets a start-up warning."""
    settings = Settings.from_env({"OTP_ENV": env, "OTP_HOST": host})
    assert (exposure_warning(settings) is not None) is warned
