"""The SMS-pumping guard through the API, on both stores: country lists and prefix breakers."""

from __future__ import annotations

import asyncio

import httpx

from otpserver.settings.overrides import LimitOverrides
from tests.conftest import AppFactory
from tests.support.api import Browser
from tests.support.fakes import FakeClock, RecordingSender
from tests.support.peers import Peers, address


def number(n: int) -> str:
    """The n-th valid US number of one six-digit prefix (+141555)."""
    return f"+1415555{n:04d}"


async def create_phone(browser: Browser, phone: str) -> httpx.Response:
    return await browser.post("/api/otp/create", json={"phone": phone})


async def test_numbers_outside_the_allow_list_are_invalid_and_get_nothing(
    make_app: AppFactory, store: str, peers: Peers, sender: RecordingSender
) -> None:
    """A country not on the allow-list is a 400 that says why; listed ones and emails work."""
    app = make_app(store, limit_overrides=LimitOverrides(sms_allowlist=("CA", "GB")))
    refused = await create_phone(peers.browser(app, address(1)), number(100))
    assert refused.status_code == 400
    assert refused.json() == {
        "error": "CREDENTIAL:INVALID",
        "message": "Codes cannot be sent to phone numbers in this country or number range.",
        "fields": ["phone"],
    }
    assert sender.sent == []
    assert (await create_phone(peers.browser(app, address(2)), "+16135550100")).status_code == 200
    assert (await peers.browser(app, address(3)).create()).status_code == 200


async def test_denied_prefixes_win_over_allowed_countries(
    make_app: AppFactory, store: str, peers: Peers, sender: RecordingSender
) -> None:
    """A denied range inside an allowed country is refused; the rest of the country is not."""
    app = make_app(
        store, limit_overrides=LimitOverrides(sms_allowlist=("US",), sms_denylist=("+1415",))
    )
    assert (await create_phone(peers.browser(app, address(1)), number(100))).status_code == 400
    assert (await create_phone(peers.browser(app, address(2)), "+12125550100")).status_code == 200
    assert len(sender.sent) == 1


async def test_a_busy_prefix_trips_its_breaker_for_every_number_in_it(
    make_app: AppFactory, store: str, peers: Peers, sender: RecordingSender, clock: FakeClock
) -> None:
    """Past its velocity limit a prefix gets no SMS for the breaker's time; others still do."""
    app = make_app(
        store,
        limit_overrides=LimitOverrides(numbers={"prefix_sends": 3, "prefix_breaker_seconds": 1800}),
    )
    for n in range(3):
        response = await create_phone(peers.browser(app, address(n)), number(100 + n))
        assert response.status_code == 200
    clock.advance(60)
    tripped = await create_phone(peers.browser(app, address(10)), number(200))
    assert tripped.status_code == 429
    assert tripped.headers["retry-after"] == str(1800 - 60)
    assert (await create_phone(peers.browser(app, address(11)), "+12125550100")).status_code == 200
    assert len(sender.sent) == 4
    clock.advance(1800 - 60)
    assert (await create_phone(peers.browser(app, address(12)), number(201))).status_code == 200


async def test_a_burst_into_one_prefix_sends_exactly_its_limit(
    make_app: AppFactory, store: str, peers: Peers, sender: RecordingSender
) -> None:
    """Of 30 parallel creates for 30 numbers of one prefix, exactly the limit are sent."""
    app = make_app(store, limit_overrides=LimitOverrides(numbers={"prefix_sends": 8}))
    browsers = [peers.browser(app, address(i)) for i in range(30)]
    responses = await asyncio.gather(
        *(create_phone(b, number(100 + i)) for i, b in enumerate(browsers))
    )
    assert sum(r.status_code == 200 for r in responses) == 8
    assert len(sender.sent) == 8
