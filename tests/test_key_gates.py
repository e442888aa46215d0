"""The API key's charge as the gate of a request's one store step (SPEC §10).

Challenge steps, TOTP confirmations and verifications, backup-code redemptions,
trusted-device checks and revocations charge their key inside their one store step; every way such a
request can end before that step charges the key on its own. Either way a request counts
exactly once: a key with room for `n` gets `n` answers, then 429, whatever mix of steps and
garbage it sends, and a refused key spends nothing (the same token or code still works once
the window ends). Every test runs on both stores.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from otpserver.http.app import OtpApp
from otpserver.settings.api import ApiKeyEntry, ApiSettings
from tests.conftest import ISSUER, AppFactory
from tests.support.factors import API_KEY, SUBJECT, api_keys, app_code, auth, enrolled
from tests.support.fakes import FakeClock, RecordingSender

CHALLENGES_ID = "gatedbackend"
CHALLENGES_KEY = f"otpk_{CHALLENGES_ID}_" + "G4t3dK3yF0rCh4ll3ng3sT3st1ngAb2C"
EMAIL = "ada@example.com"
WINDOW = 60

Clients = Callable[[OtpApp], httpx.AsyncClient]


@pytest.fixture
def limited(
    make_app: AppFactory, store: str, client_for: Clients
) -> Callable[[int], httpx.AsyncClient]:
    """A client of an app whose keys have room for `requests` a minute, on each store."""

    def build(requests: int) -> httpx.AsyncClient:
        keys = (
            *api_keys(),
            ApiKeyEntry(
                CHALLENGES_ID,
                hashlib.sha256(CHALLENGES_KEY.encode()).digest(),
                frozenset({"challenges"}),
            ),
        )
        api = ApiSettings(
            issuer=ISSUER, keys=keys, key_requests=requests, key_window_seconds=WINDOW
        )
        return client_for(make_app(store, api=api))

    return build


async def post(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], key: str = CHALLENGES_KEY
) -> httpx.Response:
    return await client.post(path, json=body, headers=auth(key))


def assert_key_refused(response: httpx.Response, within: int = WINDOW) -> int:
    """The key's own 429, as `charge_key` has always answered it; its Retry-After."""
    assert response.status_code == 429, response.text
    assert response.json()["error"] == "RATE:LIMITED"
    retry_after = int(response.headers["retry-after"])
    assert 0 < retry_after <= within
    return retry_after


def last_code(sender: RecordingSender) -> str:
    return sender.sent[-1].code


async def test_a_check_past_the_key_limit_is_refused_and_spends_nothing(
    limited: Callable[[int], httpx.AsyncClient], clock: FakeClock, sender: RecordingSender
) -> None:
    """Create, a wrong check and a garbage body use the key's three requests, each once;
    the right code's check is then refused by the gate of its own claim, and once the
    window ends the very same token still takes that code."""
    client = limited(3)
    created = await post(client, "/v1/challenges", {"email": EMAIL})
    assert created.status_code == 201, created.text
    code = last_code(sender)
    wrong = "0" * len(code) if code != "0" * len(code) else "1" * len(code)
    checked = await post(
        client, "/v1/challenges/check", {"challenge": created.json()["challenge"], "code": wrong}
    )
    assert checked.json()["status"] == "incorrect"
    token = checked.json()["challenge"]
    garbage = await post(client, "/v1/challenges/check", {"challenge": token})
    assert garbage.status_code == 400

    refused = await post(client, "/v1/challenges/check", {"challenge": token, "code": code})
    assert_key_refused(refused)
    assert_key_refused(await post(client, "/v1/challenges/check", {"challenge": token}))

    clock.advance(WINDOW + 1)
    approved = await post(client, "/v1/challenges/check", {"challenge": token, "code": code})
    assert approved.json()["status"] == "approved", approved.text


async def test_garbage_alone_is_charged_once_a_request_and_then_refused(
    limited: Callable[[int], httpx.AsyncClient],
) -> None:
    """Requests that never reach a step of their own (a bad body, a token that does not
    open, a malformed code) are each charged once, on the way out or in the claim that
    meters a refused create, and refused past the limit."""
    client = limited(5)
    endings: list[tuple[str, dict[str, Any]]] = [
        ("/v1/challenges/check", {"challenge": "x"}),
        ("/v1/challenges/check", {"challenge": "not-a-token", "code": "123456"}),
        ("/v1/challenges/resend", {"challenge": "not-a-token"}),
        ("/v1/challenges/cancel", {"nope": 1}),
        # Charged in the claim that meters the refused body against its address.
        ("/v1/challenges", {"email": "not an address"}),
    ]
    answers = [(await post(client, path, body)).status_code for path, body in endings]
    assert answers == [400, 200, 200, 400, 400]
    assert_key_refused(await post(client, "/v1/challenges", {"email": "not an address"}))


async def test_resend_and_cancel_charge_the_key_in_their_step(
    limited: Callable[[int], httpx.AsyncClient], clock: FakeClock, sender: RecordingSender
) -> None:
    """A refused cancel leaves its token live: after the window it is canceled for real."""
    client = limited(2)
    created = await post(client, "/v1/challenges", {"email": EMAIL})
    token = created.json()["challenge"]
    clock.advance(WINDOW + 1)
    resent = await post(client, "/v1/challenges/resend", {"challenge": token})
    assert resent.status_code == 200, resent.text
    token = resent.json()["challenge"]
    assert (await post(client, "/v1/challenges", {"email": "bob@example.com"})).is_success
    assert_key_refused(await post(client, "/v1/challenges/cancel", {"challenge": token}))
    clock.advance(WINDOW + 1)
    canceled = await post(client, "/v1/challenges/cancel", {"challenge": token})
    assert canceled.json() == {"status": "canceled"}
    assert len(sender.sent) == 3


async def call(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> httpx.Response:
    return await post(client, path, {"subject": SUBJECT, **body}, API_KEY)


async def test_a_totp_code_refused_by_the_key_limit_still_works_after_the_window(
    limited: Callable[[int], httpx.AsyncClient], clock: FakeClock
) -> None:
    """Enrolment, confirmation, a bad body and a malformed code use the key's four
    requests; the right code is then refused without taking its step, and approved once
    the window has ended."""
    client = limited(4)
    secret, enrolment = await enrolled(client, clock.now)
    clock.advance(30)
    verify = "/v1/totp/verify"
    assert (await call(client, verify, {"enrolment": enrolment})).status_code == 400
    malformed = await call(client, verify, {"enrolment": enrolment, "code": "12"})
    assert malformed.status_code == 400
    code = app_code(secret, clock.now)
    retry_after = assert_key_refused(
        await call(client, verify, {"enrolment": enrolment, "code": code})
    )
    clock.advance(retry_after)
    approved = await call(client, verify, {"enrolment": enrolment, "code": code})
    assert approved.json()["status"] == "approved", approved.text


async def test_a_backup_code_refused_by_the_key_limit_is_not_spent(
    limited: Callable[[int], httpx.AsyncClient], clock: FakeClock
) -> None:
    """A redemption refused by the key's limit neither spends its code nor counts a
    failure; after the window the code redeems, once."""
    client = limited(3)
    made = (await call(client, "/v1/backup-codes", {"count": 5})).json()
    redeem = "/v1/backup-codes/redeem"
    first = {"set": made["set"], "code": made["codes"][0]}
    assert (await call(client, redeem, {"set": made["set"]})).status_code == 400
    assert (await call(client, redeem, {**first, "code": "?"})).status_code == 400
    assert_key_refused(await call(client, redeem, first))
    clock.advance(WINDOW + 1)
    approved = await call(client, redeem, first)
    assert approved.json()["status"] == "approved", approved.text
    again = await call(client, redeem, first)
    assert again.json()["status"] == "incorrect"


async def test_a_device_check_past_the_key_limit_is_refused_in_its_read(
    make_app: AppFactory, store: str, client_for: Clients, clock: FakeClock
) -> None:
    """A trusted-device check charges its key in the step that reads the revocations: past
    the limit it is the key's 429, and once the window ends the device checks trusted."""
    api = ApiSettings(
        issuer=ISSUER, keys=api_keys("devices"), key_requests=2, key_window_seconds=WINDOW
    )
    client = client_for(make_app(store, api=api))
    trusted = await client.post("/v1/devices/trust", json={"subject": SUBJECT}, headers=auth())
    assert trusted.status_code == 201, trusted.text
    check = {"subject": SUBJECT, "device": trusted.json()["device"]}
    answer = await client.post("/v1/devices/check", json=check, headers=auth())
    assert answer.json()["trusted"] is True, answer.text
    assert_key_refused(await client.post("/v1/devices/check", json=check, headers=auth()))
    clock.advance(WINDOW + 1)
    again = await client.post("/v1/devices/check", json=check, headers=auth())
    assert again.json()["trusted"] is True, again.text


async def test_a_revocation_past_the_key_limit_is_refused_and_revokes_nothing(
    make_app: AppFactory, store: str, client_for: Clients, clock: FakeClock
) -> None:
    """A revocation charges its key in the step that writes its marker: past the limit it is
    the key's 429 and the device stays trusted; after the window the same call revokes it,
    and a revocation with a bad body counts once like any other request."""
    api = ApiSettings(
        issuer=ISSUER, keys=api_keys("devices"), key_requests=3, key_window_seconds=WINDOW
    )
    client = client_for(make_app(store, api=api))
    trusted = await client.post("/v1/devices/trust", json={"subject": SUBJECT}, headers=auth())
    device, device_id = trusted.json()["device"], trusted.json()["deviceId"]
    revoke = {"subject": SUBJECT, "deviceId": device_id}
    garbage = await client.post("/v1/devices/revoke", json={"deviceId": 7}, headers=auth())
    assert garbage.status_code == 400, garbage.text
    one = await client.post("/v1/devices/revoke", json={"subject": "other"}, headers=auth())
    assert one.json() == {"revoked": "all"}, one.text
    assert_key_refused(await client.post("/v1/devices/revoke", json=revoke, headers=auth()))
    clock.advance(WINDOW + 1)
    check = {"subject": SUBJECT, "device": device}
    still = await client.post("/v1/devices/check", json=check, headers=auth())
    assert still.json()["trusted"] is True, still.text
    revoked = await client.post("/v1/devices/revoke", json=revoke, headers=auth())
    assert revoked.json() == {"revoked": device_id}, revoked.text
    after = await client.post("/v1/devices/check", json=check, headers=auth())
    assert after.json() == {"trusted": False, "reason": "revoked"}
