"""The cookie: attributes, size, opacity, and the one answer to every kind of tampering."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from http.cookies import SimpleCookie
from typing import TypeVar

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otpserver.http.app import OtpApp, create_app
from otpserver.settings.environment import Settings
from otpserver.verification.sealing import b64decode
from tests.conftest import MASTER_KEY, PUBLIC_SITE, SIGNING, AppFactory, test_hooks
from tests.support.api import Browser
from tests.support.fakes import FakeClock, RecordingSender
from tests.support.hooks import HOOKS
from tests.support.mutations import cookie_mutations, header_safe

T = TypeVar("T")


def parse_set_cookie(header: str) -> dict[str, str]:
    """Attributes of one Set-Cookie header, lower-cased names; flags map to ''."""
    name_value, *attributes = [part.strip() for part in header.split(";")]
    result = {"__name__": name_value.partition("=")[0]}
    for attribute in attributes:
        key, _, value = attribute.partition("=")
        result[key.lower()] = value
    return result


async def test_production_cookie_attributes(client: httpx.AsyncClient) -> None:
    """`__Host-otp`, Secure, HttpOnly, SameSite=Strict, Path=/, no Domain, Max-Age <= TTL."""
    response = await Browser(client).create()
    attributes = parse_set_cookie(response.headers["set-cookie"])
    assert attributes["__name__"] == "__Host-otp"
    assert attributes["secure"] == ""
    assert attributes["httponly"] == ""
    assert attributes["samesite"] == "Strict"
    assert attributes["path"] == "/"
    assert "domain" not in attributes
    assert 0 < int(attributes["max-age"]) <= 300
    assert SimpleCookie(response.headers["set-cookie"])["__Host-otp"].value


async def test_development_cookie_works_on_plain_http(
    make_app: AppFactory, client_for: Callable[[OtpApp], httpx.AsyncClient]
) -> None:
    """Development drops the `__Host-` prefix and Secure, keeping HttpOnly and SameSite."""
    client = client_for(make_app(env="development"))
    client.base_url = httpx.URL("http://localhost:8000")  # development answers loopback names only
    response = await client.post("/api/otp/create", json={"email": "ada@example.com"})
    attributes = parse_set_cookie(response.headers["set-cookie"])
    assert attributes["__name__"] == "otp"
    assert "secure" not in attributes
    assert attributes["httponly"] == ""
    assert attributes["samesite"] == "Strict"
    assert "strict-transport-security" not in response.headers


async def test_set_cookie_stays_under_4096_bytes_at_the_maximum(
    client: httpx.AsyncClient,
) -> None:
    """Three pending credentials of the longest allowed address fit in one Set-Cookie."""
    browser = Browser(client)
    response = None
    for letter in "abc":
        # 64-character local part (the RFC maximum) and a long domain: 254 characters in all.
        address = letter * 64 + "@" + ".".join(["d" * 61, "e" * 61, "f" * 61]) + ".com"
        assert len(address) == 254
        response = await browser.create(address)
        assert response.status_code == 200, response.text
    assert response is not None
    assert len("Set-Cookie: " + response.headers["set-cookie"]) < 4096


async def test_cookie_reveals_neither_credential_nor_code(
    client: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """Neither the cookie text nor its decoded bytes contain the address or the code."""
    browser = Browser(client)
    await browser.create("ada.lovelace@example.com")
    assert browser.cookie is not None
    raw = b64decode(browser.cookie)
    for secret in ("ada.lovelace@example.com", "ada.lovelace", sender.last_code):
        assert secret not in browser.cookie
        assert secret.encode() not in raw


async def test_duplicate_cookie_names_are_refused(
    client: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """A request carrying the OTP cookie twice is refused, even if one copy is valid."""
    browser = Browser(client)
    await browser.create()
    cookie = browser.cookie
    response = await client.post(
        "/api/otp/verify",
        data={"otp": sender.last_code},
        headers={"cookie": f"__Host-otp={cookie}; __Host-otp={cookie}"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "OTP:INVALID_COOKIE"


class SyncSession:
    """An app, a victim's cookie and code, and another user's cookie, driven on a private loop.

    Hypothesis runs sync tests; each example runs its request to completion on this loop.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        sender = RecordingSender()
        clock = FakeClock()
        app = create_app(
            Settings(master_key=MASTER_KEY, delivery=PUBLIC_SITE, api=SIGNING),
            test_hooks(HOOKS, clock, sender),
            clock=clock,
        )
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self.client = httpx.AsyncClient(transport=transport, base_url="https://otp.example.com")
        other, victim = Browser(self.client), Browser(self.client)
        self.run(other.create("eve@example.com"))
        self.run(victim.create("ada@example.com"))
        assert victim.cookie is not None
        assert other.cookie is not None
        self.cookie, self.other, self.code = victim.cookie, other.cookie, sender.last_code

    def run(self, awaitable: Awaitable[T]) -> T:
        return self.loop.run_until_complete(awaitable)

    def verify(self, cookie: str) -> httpx.Response:
        return self.run(
            self.client.post(
                "/api/otp/verify",
                data={"otp": self.code},
                headers={"cookie": f"__Host-otp={cookie}"},
            )
        )

    def close(self) -> None:
        self.run(self.client.aclose())
        self.loop.close()


@pytest.fixture(scope="module")
def session() -> Iterator[SyncSession]:
    """One victim session shared by all fuzzing examples."""
    shared = SyncSession()
    yield shared
    shared.close()


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_every_mutation_is_invalid_cookie(session: SyncSession, data: st.DataObject) -> None:
    """Flips, truncation, extension, swaps, re-encodings: 400 INVALID_COOKIE, never 500."""
    mutated = data.draw(cookie_mutations(session.cookie, session.other))
    # Cookie headers cannot carry separators or control characters; the rest goes through.
    safe = header_safe(mutated)
    if safe == session.cookie:
        return
    response = session.verify(safe)
    assert response.status_code == 400, (mutated, response.text)
    assert response.json()["error"] == "OTP:INVALID_COOKIE"


def test_the_victim_session_survives_the_fuzzing(session: SyncSession) -> None:
    """After all the mutated cookies above, the untouched cookie still verifies."""
    assert session.verify(session.cookie).status_code == 200


@pytest.mark.parametrize("value", ["", "=", "a b", "%%%", "x" * 5000, "AQ", "__Host-otp"])
async def test_odd_cookie_values_are_invalid_cookie(client: httpx.AsyncClient, value: str) -> None:
    """Empty, padded, spaced, percent-encoded or huge values never reach crypto or cause 500."""
    response = await client.post("/api/otp/resend", headers={"cookie": f"__Host-otp={value}"})
    assert response.status_code == 400
    assert response.json()["error"] == "OTP:INVALID_COOKIE"
