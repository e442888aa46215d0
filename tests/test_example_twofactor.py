"""The two-factor example's own safeguards, without otpserver: CSRF, sessions, passwords,
and which signed results may sign a user in. The whole journey against a real server is
`tests/e2e/test_twofactor.py`."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from examples.twofactor.app import create_app
from examples.twofactor.config import Config
from examples.twofactor.signin import result_names
from examples.twofactor.storage import User

PASSWORD = "correct horse battery staple"
USER = User("u_1", "ada@example.com", "$argon2id$", None, None, 0)


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "users.sqlite3"


@pytest.fixture
async def browser(database: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the example (started through its lifespan) whose otpserver is never
    reached by these tests."""
    config = Config(
        otp_url="http://127.0.0.1:9", otp_api_key="otpk_example_x", database=str(database)
    )
    app = create_app(config)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://example.test") as client,
    ):
        yield client


async def csrf_of(client: httpx.AsyncClient, path: str) -> str:
    """The CSRF token in the form at `path`."""
    found = re.search(r'name="csrf" value="([^"]+)"', (await client.get(path)).text)
    assert found is not None
    return found.group(1)


async def register(client: httpx.AsyncClient) -> httpx.Response:
    token = await csrf_of(client, "/register")
    fields = {"csrf": token, "email": "Ada@Example.com", "password": PASSWORD}
    response = await client.post("/register", data=fields)
    assert (response.status_code, response.headers["location"]) == (303, "/?welcome")
    return response


async def sign_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    token = await csrf_of(client, "/signin")
    fields = {"csrf": token, "email": email, "password": password}
    return await client.post("/signin", data=fields)


async def test_a_form_without_the_sessions_csrf_token_changes_nothing(
    browser: httpx.AsyncClient, database: Path
) -> None:
    """A registration posted without the token, or with another session's, is a 403 and
    creates no user."""
    other = await csrf_of(browser, "/register")
    browser.cookies.clear()
    await csrf_of(browser, "/register")
    for token in ("", other):
        fields = {"csrf": token, "email": "eve@example.com", "password": PASSWORD}
        assert (await browser.post("/register", data=fields)).status_code == 403
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM users").fetchone() == (0,)


async def test_registration_replaces_the_session_and_stores_only_hashes(
    browser: httpx.AsyncClient, database: Path
) -> None:
    """Registering signs in under a new session cookie (HttpOnly, SameSite=Lax); the table
    holds an Argon2id hash, never the password, and only a hash of the session token."""
    await csrf_of(browser, "/register")
    anonymous = browser.cookies["session"]
    answer = await register(browser)
    signed_in = browser.cookies["session"]
    assert signed_in != anonymous
    attributes = answer.headers["set-cookie"].lower()
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert "Signed in as <strong>ada@example.com</strong>" in (await browser.get("/")).text
    with sqlite3.connect(database) as db:
        (stored,) = db.execute("SELECT password_hash FROM users").fetchone()
        hashes = {row[0] for row in db.execute("SELECT token_hash FROM sessions")}
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert hashlib.sha256(signed_in.encode()).digest() in hashes
    assert signed_in.encode() not in hashes


async def test_a_password_only_leads_to_the_second_step(browser: httpx.AsyncClient) -> None:
    """A wrong password and an unknown email get the same refusal; the right password moves
    to the second step under a new session, which is not signed in."""
    await register(browser)
    await browser.post("/signout", data={"csrf": await csrf_of(browser, "/")})
    wrong = await sign_in(browser, "ada@example.com", "not the password")
    unknown = await sign_in(browser, "nobody@example.com", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert "That email and password do not match." in wrong.text
    assert "That email and password do not match." in unknown.text
    before = browser.cookies["session"]
    right = await sign_in(browser, "ada@example.com", PASSWORD)
    assert (right.status_code, right.headers["location"]) == (303, "/second-factor")
    assert browser.cookies["session"] != before
    assert (await browser.get("/")).headers["location"] == "/signin"
    assert "Email me a code" in (await browser.get("/second-factor")).text


async def test_an_unreachable_otpserver_is_a_try_again_page(browser: httpx.AsyncClient) -> None:
    """When otpserver cannot be reached, asking for an email code answers 503 with a page
    saying to try again, and the user stays at the second step."""
    await register(browser)
    await browser.post("/signout", data={"csrf": await csrf_of(browser, "/")})
    await sign_in(browser, "ada@example.com", PASSWORD)
    token = await csrf_of(browser, "/second-factor")
    response = await browser.post("/second-factor/email/send", data={"csrf": token})
    assert response.status_code == 503
    assert "The verification service is busy or unavailable." in response.text
    assert "Email me a code" in (await browser.get("/second-factor")).text


def test_a_result_signs_in_only_the_user_and_method_it_names() -> None:
    """A TOTP or backup-code result must name the user's id, an email-code result the
    user's verified address, and the method must be the one the user used."""
    totp = {"otp_method": "totp", "sub": "u_1"}
    assert result_names(totp, USER, "totp")
    assert not result_names({**totp, "sub": "u_2"}, USER, "totp")
    assert not result_names(totp, USER, "backup_code")
    email = {"otp_method": "email_code", "email": "ada@example.com", "email_verified": True}
    assert result_names(email, USER, "email_code")
    assert not result_names({**email, "email": "eve@example.com"}, USER, "email_code")
    assert not result_names({**email, "email_verified": False}, USER, "email_code")
