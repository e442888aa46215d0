"""Backup codes over `/v1` (SPEC §14) on both stores."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis

from otpserver.http.app import OtpApp
from otpserver.settings.api import ApiSettings
from tests.conftest import ISSUER, MASTER_KEY, AppFactory
from tests.support.factors import (
    KEY_ID,
    SUBJECT,
    api_keys,
    app_code,
    auth,
    call,
    decode_result,
    enrolled,
)
from tests.support.fakes import FakeClock

GENERATE = "/v1/backup-codes"
REDEEM = "/v1/backup-codes/redeem"
OTHER_MASTER_KEY = bytes(range(32, 64))
DISPLAY = re.compile(r"[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}")

Clients = Callable[[OtpApp], httpx.AsyncClient]


@pytest.fixture
def factor_app(make_app: AppFactory, store: str) -> Callable[..., OtpApp]:
    """Builds apps on the store under test with the test API keys and given settings."""

    def build(**settings: Any) -> OtpApp:
        settings.setdefault("api", ApiSettings(issuer=ISSUER, keys=api_keys()))
        return make_app(store, **settings)

    return build


@pytest.fixture
def client(factor_app: Callable[..., OtpApp], client_for: Clients) -> httpx.AsyncClient:
    """A client of a production app on the store under test."""
    return client_for(factor_app())


async def generate(client: httpx.AsyncClient, subject: str = SUBJECT, **extra: Any) -> Any:
    return await call(client, GENERATE, {"subject": subject, **extra})


async def redeem(client: httpx.AsyncClient, code_set: str, code: str, **extra: Any) -> Any:
    return await call(client, REDEEM, {"subject": SUBJECT, "set": code_set, "code": code, **extra})


async def test_a_set_is_shown_once_as_grouped_codes(client: httpx.AsyncClient) -> None:
    """Generation answers 201 with ten distinct grouped codes, the sealed set and its id."""
    response = await client.post(GENERATE, json={"subject": SUBJECT}, headers=auth())
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"codes", "set", "setId"}
    assert len(set(body["codes"])) == 10
    assert all(DISPLAY.fullmatch(code) for code in body["codes"])
    for code in body["codes"]:
        assert code.replace("-", "") not in body["set"]


async def test_set_sizes_are_5_to_20(client: httpx.AsyncClient) -> None:
    """Counts 5 and 20 are taken; 4 and 21 are a 400."""
    assert len((await generate(client, count=5))["codes"]) == 5
    assert len((await generate(client, count=20))["codes"]) == 20
    for count in (4, 21):
        response = await client.post(
            GENERATE, json={"subject": SUBJECT, "count": count}, headers=auth()
        )
        assert (response.status_code, response.json()["error"]) == (400, "BODY:INVALID")


async def test_each_code_works_once_and_the_set_counts_down(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Every code redeems once, typed loosely, with `remaining` falling and a signed result."""
    made = await generate(client, count=5)
    code_set = made["set"]
    for spent, code in enumerate(made["codes"], start=1):
        typed = code.lower().replace("-", " ").replace("0", "o").replace("1", "l")
        answer = await redeem(client, code_set, typed, nonce="n-1")
        assert answer["status"] == "approved", answer
        assert answer["remaining"] == 5 - spent
        assert answer["setId"] == made["setId"]
        claims = await decode_result(client, answer["result"], audience=KEY_ID, now=clock.now)
        assert (claims["sub"], claims["otp_method"], claims["nonce"]) == (
            SUBJECT,
            "backup_code",
            "n-1",
        )
        code_set = answer["set"]
        assert (await redeem(client, code_set, code))["status"] == "incorrect"


async def test_a_rolled_back_host_database_cannot_spend_a_code_twice(
    client: httpx.AsyncClient,
) -> None:
    """Redeeming again with the set as it was before the redemption is refused."""
    made = await generate(client)
    first = await redeem(client, made["set"], made["codes"][0])
    assert first["status"] == "approved"
    assert (await redeem(client, made["set"], made["codes"][0]))["status"] == "incorrect"
    assert (await redeem(client, made["set"], made["codes"][1]))["status"] == "approved"


async def test_a_new_set_refuses_older_ones(client: httpx.AsyncClient, clock: FakeClock) -> None:
    """Once a new set is generated, codes of the older set answer expired."""
    old = await generate(client)
    clock.advance(1)
    new = await generate(client)
    assert (await redeem(client, old["set"], old["codes"][0]))["status"] == "expired"
    assert (await redeem(client, new["set"], new["codes"][0]))["status"] == "approved"


async def test_sets_expire_after_their_maximum_life(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A set is refused as expired 400 days after it was made, and works just before."""
    made = await generate(client)
    clock.advance(400 * 86400 - 10)
    assert (await redeem(client, made["set"], made["codes"][0]))["status"] == "approved"
    clock.advance(10)
    assert (await redeem(client, made["set"], made["codes"][1]))["status"] == "expired"


async def test_wrong_codes_lock_backup_codes_but_not_totp(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Five wrong backup codes lock redemption, right codes included; TOTP still works."""
    secret, enrolment = await enrolled(client, clock.now)
    made = await generate(client)
    for _ in range(5):
        answer = await redeem(client, made["set"], "0000-0000-0000-0000")
        assert answer["status"] == "incorrect"
    locked = await redeem(client, made["set"], made["codes"][0])
    assert locked["status"] == "locked"
    assert 0 < locked["retryAfter"] <= 900
    clock.advance(30)
    verified = await call(
        client,
        "/v1/totp/verify",
        {"subject": SUBJECT, "enrolment": enrolment, "code": app_code(secret, clock.now)},
    )
    assert verified["status"] == "approved"
    clock.advance(900)
    assert (await redeem(client, made["set"], made["codes"][0]))["status"] == "approved"


async def test_a_locked_authenticator_never_locks_backup_codes(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Five wrong TOTP codes lock TOTP only: a backup code still redeems."""
    _, enrolment = await enrolled(client, clock.now)
    for _ in range(6):
        await call(
            client,
            "/v1/totp/verify",
            {"subject": SUBJECT, "enrolment": enrolment, "code": "999999"},
        )
    made = await generate(client)
    assert (await redeem(client, made["set"], made["codes"][0]))["status"] == "approved"


async def test_sets_of_another_subject_kind_or_tampered_are_invalid(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Another subject's set, a TOTP enrolment, a tampered or junk blob: invalid."""
    _, enrolment = await enrolled(client, clock.now)
    made = await generate(client)
    code = made["codes"][0]
    other = await call(client, REDEEM, {"subject": "user-2", "set": made["set"], "code": code})
    assert other == {"status": "invalid"}
    blob = made["set"]
    flipped = blob[:30] + ("A" if blob[30] != "A" else "B") + blob[31:]
    for bad in (enrolment, flipped, blob[:-2], blob + "AA", "x"):
        assert (await redeem(client, bad, code)) == {"status": "invalid"}
    assert (await redeem(client, blob, code))["status"] == "approved"


async def test_a_malformed_code_is_a_400(client: httpx.AsyncClient) -> None:
    """Text that spells no backup code is `OTP:INVALID_FORMAT` and costs no attempt."""
    made = await generate(client)
    for text in ("", "ABCD", "UUUU-UUUU-UUUU-UUUU", "ABCD-EFGH-JKMN-PQR\u0405"):
        response = await client.post(
            REDEEM, json={"subject": SUBJECT, "set": made["set"], "code": text}, headers=auth()
        )
        assert (response.status_code, response.json()["error"]) == (400, "OTP:INVALID_FORMAT")
    for _ in range(5):
        await client.post(
            REDEEM, json={"subject": SUBJECT, "set": made["set"], "code": "x"}, headers=auth()
        )
    assert (await redeem(client, made["set"], made["codes"][0]))["status"] == "approved"


async def test_sets_survive_a_store_flush_and_spent_markers_are_in_the_store(
    factor_app: Callable[..., OtpApp],
    client_for: Clients,
    store: str,
    request: pytest.FixtureRequest,
) -> None:
    """After a flush the set still opens and its unused codes redeem."""
    first = client_for(factor_app())
    made = await generate(first)
    answer = await redeem(first, made["set"], made["codes"][0])
    if store == "redis":
        redis.Redis.from_url(request.getfixturevalue("redis_url")).flushdb()
    second = client_for(factor_app())
    assert (await redeem(second, answer["set"], made["codes"][1]))["status"] == "approved"


async def test_master_key_rotation_reseals_sets(
    factor_app: Callable[..., OtpApp], client_for: Clients
) -> None:
    """A set sealed under the previous master key redeems and comes back re-sealed, also when
    the code was wrong; without the previous key it is invalid."""
    old = client_for(factor_app())
    made = await generate(old)
    rotated = client_for(
        factor_app(
            master_key=OTHER_MASTER_KEY,
            api=ApiSettings(issuer=ISSUER, keys=api_keys(), previous_master_keys=(MASTER_KEY,)),
        )
    )
    wrong = await redeem(rotated, made["set"], "0000-0000-0000-0000")
    assert wrong["status"] == "incorrect"
    assert wrong["set"] != made["set"]
    answer = await redeem(rotated, made["set"], made["codes"][0])
    assert answer["status"] == "approved"
    forgotten = client_for(factor_app(master_key=OTHER_MASTER_KEY))
    assert (await redeem(forgotten, made["set"], made["codes"][1])) == {"status": "invalid"}
    assert (await redeem(forgotten, answer["set"], made["codes"][1]))["status"] == "approved"
