"""Redis round trips of the `/v1` checks and challenge steps: one store step each, whatever
the outcome.

A TOTP verification or a backup-code redemption is exactly one round trip, a right code
included: the marker claim, with the API key's own charge riding in it as its gate. Routes
with no one store step charge the key in a round trip of its own. Counted at the client,
because Redis's own statistics also count what scripts run inside.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from otpserver.settings.api import ApiKeyEntry, ApiSettings
from otpserver.stores.connections import RedisClient
from otpserver.v1.challenges import SCOPE
from tests.conftest import ISSUER, AppFactory
from tests.support.factors import API_KEY, KEY_ID, SUBJECT, api_keys, app_code, auth, call, enrolled
from tests.support.fakes import FakeClock, RecordingSender

EMAIL = "ada@example.com"


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A one-item list holding how many round trips the Redis clients have made so far."""
    count = [0]
    execute: Callable[..., Awaitable[Any]] = RedisClient.execute
    pipeline: Callable[..., Awaitable[Any]] = RedisClient.pipeline

    async def counted(self: RedisClient, *command: Any) -> Any:
        count[0] += 1
        return await execute(self, *command)

    async def counted_pipeline(self: RedisClient, commands: Any) -> Any:
        # A step and the store sequence's INCR go together: one write, one round trip.
        count[0] += 1
        return await pipeline(self, commands)

    monkeypatch.setattr(RedisClient, "execute", counted)
    monkeypatch.setattr(RedisClient, "pipeline", counted_pipeline)
    return count


async def test_each_check_is_one_round_trip_api_key_included(
    make_app: AppFactory,
    client_for: Callable[..., httpx.AsyncClient],
    clock: FakeClock,
    sent: list[int],
) -> None:
    """Right, wrong, replayed, locked and superseded alike: the check's answer and the key's
    charge come from one round trip; an enrolment (no store step of its own) costs the
    charge alone, and a confirmation is one claim like a verification."""
    client = client_for(make_app("redis", api=ApiSettings(issuer=ISSUER, keys=api_keys())))
    secret, enrolment = await enrolled(client, clock.now)

    async def trips(path: str, body: dict[str, Any]) -> tuple[int, str]:
        before = sent[0]
        answer = await call(client, path, {"subject": SUBJECT, **body})
        return sent[0] - before, str(answer.get("status", "created"))

    enrol = {"account": "ada@example.com"}
    assert await trips("/v1/totp/enrolments", enrol) == (1, "created")
    clock.advance(30)
    right = {"enrolment": enrolment, "code": app_code(secret, clock.now)}
    wrong = {**right, "code": "000000" if right["code"] != "000000" else "111111"}
    verify = "/v1/totp/verify"
    assert await trips(verify, right) == (1, "approved")
    assert await trips(verify, right) == (1, "incorrect")
    for _ in range(4):
        assert await trips(verify, wrong) == (1, "incorrect")
    assert await trips(verify, wrong) == (1, "locked")

    started = await call(client, "/v1/totp/enrolments", {"subject": SUBJECT, **enrol})
    confirm = {"pending": started["pending"], "code": app_code(started["secret"], clock.now)}
    assert await trips("/v1/totp/enrolments/confirm", confirm) == (1, "approved")

    redeem = "/v1/backup-codes/redeem"
    made = await call(client, "/v1/backup-codes", {"subject": SUBJECT, "count": 5})
    first = {"set": made["set"], "code": made["codes"][0]}
    assert await trips(redeem, first) == (1, "approved")
    assert await trips(redeem, first) == (1, "incorrect")
    for _ in range(4):
        assert await trips(redeem, {**first, "code": "0000-0000-0000-0000"}) == (1, "incorrect")
    assert await trips(redeem, {**first, "code": made["codes"][1]}) == (1, "locked")
    clock.advance(1)
    await call(client, "/v1/backup-codes", {"subject": SUBJECT, "count": 5})
    assert await trips(redeem, {**first, "code": made["codes"][1]}) == (1, "expired")


async def test_each_challenge_step_is_one_round_trip_api_key_included(
    make_app: AppFactory,
    client_for: Callable[..., httpx.AsyncClient],
    clock: FakeClock,
    sender: RecordingSender,
    sent: list[int],
) -> None:
    """Create, a wrong and a right check, a resend and a cancel: each one claim, with the
    key's charge in it, and so is an invalid create's metering. A request that never
    reaches a claim (a bad check body, a resend inside its cooldown) costs the key's charge
    alone."""
    keys = (ApiKeyEntry(KEY_ID, hashlib.sha256(API_KEY.encode()).digest(), frozenset({SCOPE})),)
    client = client_for(make_app("redis", api=ApiSettings(issuer=ISSUER, keys=keys)))

    async def trips(path: str, body: dict[str, Any]) -> tuple[int, int, dict[str, Any]]:
        before = sent[0]
        response = await client.post(path, json=body, headers=auth())
        return sent[0] - before, response.status_code, response.json()

    # The first seal fetches the key ring's current key; every later one has it cached.
    await trips("/v1/challenges", {"email": "warm@example.com"})
    count, status, created = await trips("/v1/challenges", {"email": EMAIL})
    assert (count, status) == (1, 201)
    code = sender.sent[-1].code
    wrong = "0" * len(code) if code != "0" * len(code) else "1" * len(code)
    check = "/v1/challenges/check"
    count, _, incorrect = await trips(check, {"challenge": created["challenge"], "code": wrong})
    assert (count, incorrect["status"]) == (1, "incorrect")
    count, _, approved = await trips(check, {"challenge": incorrect["challenge"], "code": code})
    assert (count, approved["status"]) == (1, "approved")
    count, status, _ = await trips(check, {"challenge": incorrect["challenge"]})
    assert (count, status) == (1, 400)
    # A create refused as invalid is metered against its address, the key's charge with it.
    count, status, _ = await trips("/v1/challenges", {"email": "not an address"})
    assert (count, status) == (1, 400)

    count, _, second = await trips("/v1/challenges", {"email": "bob@example.com"})
    assert count == 1
    count, status, _ = await trips("/v1/challenges/resend", {"challenge": second["challenge"]})
    assert (count, status) == (1, 429)
    clock.advance(31)
    # The key ring's cached keys have run out: the next seal fetches them again.
    await trips("/v1/challenges", {"email": "warm@example.com"})
    count, status, resent = await trips("/v1/challenges/resend", {"challenge": second["challenge"]})
    assert (count, status) == (1, 200), resent
    count, _, canceled = await trips("/v1/challenges/cancel", {"challenge": resent["challenge"]})
    assert (count, canceled["status"]) == (1, "canceled")


async def test_a_key_seen_refused_is_answered_without_a_round_trip(
    make_app: AppFactory,
    client_for: Callable[..., httpx.AsyncClient],
    clock: FakeClock,
    sent: list[int],
) -> None:
    """Once a worker has seen a key refused, it answers that key 429 at once until the
    window ends: no store call, and no scrypt for a redemption the key could not make."""
    api = ApiSettings(issuer=ISSUER, keys=api_keys(), key_requests=1, key_window_seconds=60)
    client = client_for(make_app("redis", api=api))
    made = await call(client, "/v1/backup-codes", {"subject": SUBJECT, "count": 5})
    redeem = {"subject": SUBJECT, "set": made["set"], "code": made["codes"][0]}
    first = await client.post("/v1/backup-codes/redeem", json=redeem, headers=auth())
    assert first.status_code == 429
    before = sent[0]
    again = await client.post("/v1/backup-codes/redeem", json=redeem, headers=auth())
    assert again.status_code == 429
    assert 0 < int(again.headers["retry-after"]) <= 60
    assert sent[0] == before
    clock.advance(61)
    approved = await client.post("/v1/backup-codes/redeem", json=redeem, headers=auth())
    assert approved.json()["status"] == "approved", approved.text


async def test_a_device_check_and_a_revocation_are_one_round_trip_each_api_key_included(
    make_app: AppFactory,
    client_for: Callable[..., httpx.AsyncClient],
    sent: list[int],
) -> None:
    """Trusted, revoked one by one, revoked all at once: the key's charge and every
    revocation marker (the current master key's names and a previous one's) come from one
    round trip; a device token that does not open reads nothing and costs the charge alone.
    A revocation, one device or all, is one round trip too: its marker write with the key's
    charge in front."""
    api = ApiSettings(issuer=ISSUER, keys=api_keys("devices"), previous_master_keys=(bytes(32),))
    client = client_for(make_app("redis", api=api))

    async def trips(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        before = sent[0]
        answer = await call(client, "/v1/devices/check", {"subject": SUBJECT, **body})
        return sent[0] - before, answer

    async def revoke_trips(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        before = sent[0]
        answer = await call(client, "/v1/devices/revoke", body)
        return sent[0] - before, answer

    first = await call(client, "/v1/devices/trust", {"subject": SUBJECT})
    second = await call(client, "/v1/devices/trust", {"subject": SUBJECT})
    await trips({"device": first["device"]})  # loads the script into this Redis
    count, answer = await trips({"device": first["device"]})
    assert (count, answer["trusted"]) == (1, True)
    revoke_one = {"subject": SUBJECT, "deviceId": first["deviceId"]}
    assert await revoke_trips(revoke_one) == (1, {"revoked": first["deviceId"]})
    assert await trips({"device": first["device"]}) == (1, {"trusted": False, "reason": "revoked"})
    count, answer = await trips({"device": second["device"]})
    assert (count, answer["trusted"]) == (1, True)
    assert await revoke_trips({"subject": SUBJECT}) == (1, {"revoked": "all"})
    assert await trips({"device": second["device"]}) == (1, {"trusted": False, "reason": "revoked"})
    assert await trips({"device": "not-a-device"}) == (1, {"trusted": False, "reason": "invalid"})
