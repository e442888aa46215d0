"""POST /api/otp/verify: success, wrong codes, blocks, expiry, formats and single use."""

from __future__ import annotations

import httpx
import pytest

from otpserver.http.app import OtpApp
from otpserver.stores import MemoryIdStore, RedisIdStore
from otpserver.stores.redis import ID_PREFIX
from tests.support.api import Browser, wrong
from tests.support.fakes import FakeClock, RecordingSender

STORES = ["memory", "redis", "valkey"]
"""Valkey too: the API behaves alike on either server."""


async def test_correct_code_runs_final_hook_and_clears_cookie(
    client: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """The right code answers the final hook's body, with a signed result, and clears the cookie."""
    browser = Browser(client)
    await browser.create()
    response = await browser.verify(sender.last_code)
    assert response.status_code == 200
    body = response.json()
    assert body.pop("result").count(".") == 2
    assert body == {"verified": True, "credential": "ada@example.com", "channel": "email"}
    assert "Max-Age=0" in response.headers["set-cookie"]
    assert browser.cookie is None


async def test_an_approval_that_ends_the_flow_leaves_no_live_id(
    app: OtpApp, client: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """Nothing else pending: the approval spends the cookie's ID and files no successor, so
    the store holds no ID for a finished flow (none to expire later, on Redis no key)."""
    ids = app.state.verifications.ids
    browser = Browser(client)
    await browser.create()
    cookie = browser.cookie
    assert (await browser.verify(sender.last_code)).status_code == 200
    assert await live_ids(ids) == 0
    replayed = await browser.verify(sender.last_code, cookie=cookie)
    assert replayed.json()["error"] == "OTP:INVALID_COOKIE"


async def live_ids(ids: object) -> int:
    """How many token-list IDs the store holds (the memory store's size, Redis's keys)."""
    if isinstance(ids, MemoryIdStore):
        return len(ids)
    assert isinstance(ids, RedisIdStore)
    count = 0
    cursor = b"0"
    while True:
        cursor, names = await ids.client.execute(b"SCAN", cursor, b"MATCH", ID_PREFIX + b"*")
        count += len(names)
        if cursor in (b"0", 0):
            return count


async def test_json_bodies_are_accepted(client: httpx.AsyncClient, sender: RecordingSender) -> None:
    """`{"otp": "..."}` works as well as the form field."""
    browser = Browser(client)
    await browser.create()
    response = await browser.post("/api/otp/verify", json={"otp": sender.last_code})
    assert response.status_code == 200


async def test_a_code_is_accepted_only_once(
    client: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """Verifying again after success (with the old cookie) fails."""
    browser = Browser(client)
    await browser.create()
    cookie, code = browser.cookie, sender.last_code
    assert (await browser.verify(code)).status_code == 200
    again = await browser.verify(code, cookie=cookie)
    assert again.status_code == 400
    assert again.json()["error"] == "OTP:INVALID_COOKIE"


async def test_wrong_codes_count_down_and_block(
    client: httpx.AsyncClient, sender: RecordingSender, clock: FakeClock
) -> None:
    """Each wrong code costs an attempt; the second sets a short block; then the entry is dead."""
    browser = Browser(client)
    await browser.create()
    code = sender.last_code

    first = await browser.verify(wrong(code))
    assert first.status_code == 403
    assert first.json() == {
        "error": "OTP:INCORRECT",
        "message": "The code is incorrect.",
        "attemptsLeft": 2,
        "otpBlock": None,
    }

    second = await browser.verify(wrong(code))
    assert second.json()["attemptsLeft"] == 1
    assert second.json()["otpBlock"] == "2027-01-15T08:00:05Z"

    blocked = await browser.verify(code)
    assert blocked.status_code == 403
    assert blocked.json()["error"] == "OTP:VERIFICATION_NOT_ALLOWED"
    assert blocked.json()["otpBlock"] == "2027-01-15T08:00:05Z"
    assert blocked.headers["retry-after"] == "5"

    clock.advance(5)
    third = await browser.verify(wrong(code))
    assert third.json()["attemptsLeft"] == 0

    dead = await browser.verify(code)
    assert dead.status_code == 403
    assert dead.json()["error"] == "OTP:TOO_MANY_ATTEMPTS"


async def test_code_accepted_just_before_expiry(
    client: httpx.AsyncClient, sender: RecordingSender, clock: FakeClock
) -> None:
    """At TTL-1 seconds the code still verifies."""
    browser = Browser(client)
    await browser.create()
    clock.advance(299)
    assert (await browser.verify(sender.last_code)).status_code == 200


async def test_code_refused_after_expiry(
    client: httpx.AsyncClient, sender: RecordingSender, clock: FakeClock
) -> None:
    """At TTL+1 seconds the right code answers OTP:EXPIRED."""
    browser = Browser(client)
    await browser.create()
    clock.advance(301)
    response = await browser.verify(sender.last_code)
    assert response.status_code == 400
    assert response.json()["error"] == "OTP:EXPIRED"


async def test_code_of_one_entry_fails_on_another(
    client: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """A's code does not verify B's entry in the same cookie."""
    browser = Browser(client)
    await browser.create("a@example.com")
    code_a = sender.last_code
    await browser.create("b@example.com")
    if code_a == sender.last_code:
        pytest.skip("both random codes happened to be equal (one in a million)")
    response = await browser.verify(code_a)
    assert response.json()["error"] == "OTP:INCORRECT"


async def test_code_fails_with_another_clients_cookie(
    client: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """A code sent for one browser does not verify another browser's cookie, same address or not."""
    alice, mallory = Browser(client), Browser(client)
    await alice.create("ada@example.com")
    alice_code = sender.last_code
    await mallory.create("ada@example.com")
    if alice_code == sender.last_code:
        pytest.skip("both random codes happened to be equal (one in a million)")
    response = await mallory.verify(alice_code)
    assert response.json()["error"] == "OTP:INCORRECT"


async def test_success_keeps_other_pending_entries(
    client: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """Verifying one credential re-sets the cookie with the others still pending."""
    browser = Browser(client)
    await browser.create("a@example.com")
    code_a = sender.last_code
    await browser.create("b@example.com")
    code_b = sender.last_code
    response = await browser.verify(code_b)
    assert response.status_code == 200
    assert browser.cookie is not None
    back = await browser.create("a@example.com")
    assert back.json() | {"sent": False, "pending": 1} == back.json()
    assert (await browser.verify(code_a)).status_code == 200


@pytest.mark.parametrize("otp", ["12345", "1234567", "12a456", "١٢٣٤٥٦", "12\x00456", "", " "])
async def test_malformed_codes_are_format_errors(
    client: httpx.AsyncClient, sender: RecordingSender, otp: str
) -> None:
    """Wrong shapes answer OTP:INVALID_FORMAT and cost no attempt."""
    browser = Browser(client)
    await browser.create()
    response = await browser.verify(otp)
    assert response.status_code == 400
    assert response.json()["error"] == "OTP:INVALID_FORMAT"
    assert (await browser.verify(sender.last_code)).status_code == 200


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data": {"code": "123456"}},
        {
            "content": b"otp=123456&otp=123456",
            "headers": {"content-type": "application/x-www-form-urlencoded"},
        },
        {"json": {"otp": 123456}},
        {"json": {}},
    ],
)
async def test_missing_or_repeated_otp_fields_are_format_errors(
    client: httpx.AsyncClient, kwargs: dict[str, object]
) -> None:
    """No `otp` field, two of them, or a number instead of a string: OTP:INVALID_FORMAT."""
    browser = Browser(client)
    await browser.create()
    response = await browser.post("/api/otp/verify", **kwargs)  # type: ignore[arg-type]
    assert response.json()["error"] == "OTP:INVALID_FORMAT"


async def test_verify_accepts_form_or_json_only(client: httpx.AsyncClient) -> None:
    """Any other media type is 415."""
    browser = Browser(client)
    await browser.create()
    response = await browser.post(
        "/api/otp/verify", content=b"otp=123456", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 415


async def test_verify_without_cookie_is_invalid_cookie(client: httpx.AsyncClient) -> None:
    """No cookie, no verification."""
    response = await client.post("/api/otp/verify", data={"otp": "123456"})
    assert response.status_code == 400
    assert response.json()["error"] == "OTP:INVALID_COOKIE"
