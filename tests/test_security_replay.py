"""Replays and races: an old cookie gains nothing; one of N parallel requests is evaluated."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otpserver.hooks import VerifiedCredential
from otpserver.http.app import OtpApp
from tests.conftest import AppFactory
from tests.support.api import Browser, wrong
from tests.support.fakes import FakeClock, RecordingSender
from tests.support.hooks import HOOKS

STORES = ["memory", "redis", "valkey"]
"""Valkey too: the API behaves alike on either server."""


async def test_every_earlier_cookie_is_dead_after_the_session_moves_on(
    client: httpx.AsyncClient, sender: RecordingSender, clock: FakeClock
) -> None:
    """Replaying each saved cookie of a session is INVALID_COOKIE and changes no counter."""
    browser = Browser(client)
    await browser.create("a@example.com")
    await browser.create("b@example.com")
    await browser.create("a@example.com")
    await browser.verify(wrong(sender.sent[0].code))
    clock.advance(30)
    await browser.resend()
    code = sender.last_code
    saved = list(browser.history[:-1])
    current = browser.cookie
    assert len(saved) == 4

    for old in saved:
        for action in (
            browser.verify(code, cookie=old),
            browser.verify(wrong(code), cookie=old),
            browser.resend(cookie=old),
        ):
            response = await action
            assert response.status_code == 400, response.text
            assert response.json()["error"] == "OTP:INVALID_COOKIE"
    assert len(sender.sent) == 3
    browser.cookie = current
    state = await browser.create("a@example.com")
    assert state.json()["attemptsLeft"] == 2
    assert (await browser.verify(code)).status_code == 200


async def test_fifty_parallel_verifies_evaluate_exactly_one(
    client: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """Of 50 concurrent wrong guesses with one cookie, one is evaluated and 49 are refused."""
    browser = Browser(client)
    await browser.create()
    cookie, guess = browser.cookie, wrong(sender.last_code)
    responses = await asyncio.gather(
        *(Browser(client).verify(guess, cookie=cookie) for _ in range(50))
    )
    errors = [r.json()["error"] for r in responses]
    assert errors.count("OTP:INCORRECT") == 1
    assert errors.count("OTP:INVALID_COOKIE") == 49


async def test_final_hook_runs_once_under_fifty_parallel_correct_verifies(
    make_app: AppFactory,
    store: str,
    client_for: Callable[[OtpApp], httpx.AsyncClient],
    sender: RecordingSender,
) -> None:
    """Fifty concurrent correct verifies of one cookie run the final hook exactly once."""
    calls: list[str] = []

    async def counting(verified: VerifiedCredential, request: Request) -> Response:
        calls.append(verified.credential.address)
        await asyncio.sleep(0)
        return JSONResponse({"ok": True})

    client = client_for(make_app(store, hooks=dataclasses.replace(HOOKS, final=counting)))
    browser = Browser(client)
    await browser.create()
    cookie, code = browser.cookie, sender.last_code
    responses = await asyncio.gather(
        *(Browser(client).verify(code, cookie=cookie) for _ in range(50))
    )
    assert [r.status_code for r in responses].count(200) == 1
    assert calls == ["ada@example.com"]


async def test_parallel_resends_send_once(
    client: httpx.AsyncClient, sender: RecordingSender, clock: FakeClock
) -> None:
    """Twenty concurrent resends with one cookie send exactly one new code and spend one send."""
    browser = Browser(client)
    await browser.create()
    clock.advance(30)
    cookie = browser.cookie
    responses = await asyncio.gather(*(Browser(client).resend(cookie=cookie) for _ in range(20)))
    assert [r.status_code for r in responses].count(200) == 1
    assert len(sender.sent) == 2
    # The losers are replays, refused before any limit is charged: none is RATE:LIMITED,
    # although the credential's allowance (5 sends) is smaller than the burst.
    losers = [r.json()["error"] for r in responses if r.status_code != 200]
    assert losers == ["OTP:INVALID_COOKIE"] * 19
