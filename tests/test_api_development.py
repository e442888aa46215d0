"""Development conveniences, and that production has none of them: outbox, page, test identities."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from otpserver.delivery import DeliveryConfig
from otpserver.errors import ConfigError
from otpserver.http.app import OtpApp
from otpserver.settings.environment import Settings
from tests.conftest import MASTER_KEY, AppFactory
from tests.support.api import Browser
from tests.support.fakes import RecordingSender
from tests.support.hooks import HOOKS

DEV_COOKIE = "otp"


@pytest.fixture
def dev_client(
    make_app: AppFactory, client_for: Callable[[OtpApp], httpx.AsyncClient]
) -> httpx.AsyncClient:
    """A development app with the shipped sender (console + outbox) and one test identity."""
    app = make_app(
        env="development",
        real_sender=True,
        test_credentials={"load@example.com": "424242"},
    )
    client = client_for(app)
    client.base_url = httpx.URL("http://localhost:8000")  # development answers loopback names only
    return client


async def test_outbox_lists_the_last_messages_newest_first(
    dev_client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """GET /dev/outbox shows rendered messages with their codes, newest first."""
    await dev_client.post("/api/otp/create", json={"email": "ada@example.com"})
    dev_client.cookies.clear()
    await dev_client.post("/api/otp/create", json={"email": "bob@example.com", "locale": "fr"})
    messages = (await dev_client.get("/dev/outbox")).json()["messages"]
    assert [m["to"] for m in messages] == ["bob@example.com", "ada@example.com"]
    printed = capsys.readouterr().err
    assert f"otp dev-sender: to=ada@example.com code={messages[1]['code']}" in printed
    assert messages[0]["code"] in messages[0]["subject"]


async def test_test_identities_have_fixed_codes_and_are_never_delivered(
    dev_client: httpx.AsyncClient,
) -> None:
    """A test identity verifies with its configured code, and nothing reaches the outbox."""
    browser = Browser(dev_client, cookie_name=DEV_COOKIE)
    created = await browser.create("Load@Example.com")
    assert created.json()["sent"] is True
    assert (await browser.verify("424242")).status_code == 200
    assert (await dev_client.get("/dev/outbox")).json()["messages"] == []


async def test_the_sign_in_page_is_served_in_development(dev_client: httpx.AsyncClient) -> None:
    """`/` serves the page under a same-origin CSP, with its assets under /static/."""
    page = await dev_client.get("/")
    assert page.status_code == 200
    assert 'autocomplete="one-time-code"' in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert (await dev_client.get("/static/app.js")).status_code == 200
    assert (await dev_client.get("/static/index.html")).status_code == 404


async def test_production_has_no_page_outbox_or_identities(client: httpx.AsyncClient) -> None:
    """Production serves none of the development routes."""
    for path in ("/", "/static/app.js", "/dev/outbox"):
        assert (await client.get(path)).status_code == 404


async def test_messages_name_the_configured_site_not_the_request_host(
    client: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """In production a forged Host header cannot choose the site a code is bound to."""
    await client.post(
        "/api/otp/create",
        json={"email": "ada@example.com"},
        headers={"host": "evil.example.net"},
    )
    assert sender.sent[0].origin_host == "otp.example.com"


def test_production_requires_the_site_name() -> None:
    """Without OTP_AUTOFILL_DOMAIN, production refuses to start."""
    from otpserver.http.app import create_app

    with pytest.raises(ConfigError, match="OTP_AUTOFILL_DOMAIN"):
        create_app(Settings(master_key=MASTER_KEY, delivery=DeliveryConfig()), HOOKS)
