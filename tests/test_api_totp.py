"""TOTP over `/v1` (SPEC §13) on both stores, with codes computed by pyotp."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis

from otpserver.http.app import OtpApp
from otpserver.settings.api import ApiSettings
from otpserver.settings.factors import FactorSettings
from tests.conftest import ISSUER, MASTER_KEY, AppFactory
from tests.support.factors import (
    API_KEY,
    KEY_ID,
    OTHER_API_KEY,
    SUBJECT,
    api_keys,
    app_code,
    auth,
    call,
    decode_result,
    enrolled,
)
from tests.support.fakes import FakeClock

ENROL = "/v1/totp/enrolments"
CONFIRM = "/v1/totp/enrolments/confirm"
VERIFY = "/v1/totp/verify"
OTHER_MASTER_KEY = bytes(range(32, 64))

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


async def verify(client: httpx.AsyncClient, enrolment: str, code: str, **extra: Any) -> Any:
    return await call(
        client, VERIFY, {"subject": SUBJECT, "enrolment": enrolment, "code": code, **extra}
    )


async def test_enrolment_returns_a_secret_uri_qr_and_pending_token(
    client: httpx.AsyncClient,
) -> None:
    """Enrolment answers 201 with a 160-bit base32 secret, its otpauth URI and a local SVG."""
    response = await client.post(
        ENROL, json={"subject": SUBJECT, "account": "ada@example.com"}, headers=auth()
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"pending", "uri", "secret", "qr"}
    secret = base64.b32decode(body["secret"] + "=" * (-len(body["secret"]) % 8))
    assert len(secret) * 8 >= 160
    assert body["uri"].startswith("otpauth://totp/otpserver:ada%40example.com?")
    assert f"secret={body['secret']}" in body["uri"]
    assert body["qr"].startswith("<svg")
    # The only URL in the drawing is the SVG namespace: nothing is fetched from elsewhere.
    assert body["qr"].count("http") == 1
    assert "http://www.w3.org/2000/svg" in body["qr"]


async def test_confirming_activates_and_the_setup_code_fails_at_first_login(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """The confirming code's step is spent: the same code fails at login, the next step works."""
    started = await call(client, ENROL, {"subject": SUBJECT, "account": "ada@example.com"})
    code = app_code(started["secret"], clock.now)
    confirmed = await call(
        client, CONFIRM, {"subject": SUBJECT, "pending": started["pending"], "code": code}
    )
    assert confirmed["status"] == "approved"
    assert confirmed["enrolmentId"]
    assert (await verify(client, confirmed["enrolment"], code))["status"] == "incorrect"
    clock.advance(30)
    later = app_code(started["secret"], clock.now)
    answer = await verify(client, confirmed["enrolment"], later)
    assert answer["status"] == "approved"
    assert answer["enrolmentId"] == confirmed["enrolmentId"]
    assert "enrolment" not in answer


async def test_a_code_is_accepted_at_most_once(client: httpx.AsyncClient, clock: FakeClock) -> None:
    """A second verification of an approved code is refused."""
    secret, enrolment = await enrolled(client, clock.now)
    clock.advance(30)
    code = app_code(secret, clock.now)
    assert (await verify(client, enrolment, code))["status"] == "approved"
    assert (await verify(client, enrolment, code))["status"] == "incorrect"


async def test_a_step_before_the_last_accepted_one_is_refused(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """After the next step's code is accepted, the current step's code no longer works."""
    secret, enrolment = await enrolled(client, clock.now)
    clock.advance(60)
    ahead = app_code(secret, clock.now, steps=1)
    current = app_code(secret, clock.now)
    assert (await verify(client, enrolment, ahead))["status"] == "approved"
    assert (await verify(client, enrolment, current))["status"] == "incorrect"


async def test_the_window_is_one_step_either_side(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Codes one step early or late are accepted; two steps away they are not."""
    secret, enrolment = await enrolled(client, clock.now)
    clock.advance(300)
    assert (await verify(client, enrolment, app_code(secret, clock.now, steps=-2)))[
        "status"
    ] == "incorrect"
    assert (await verify(client, enrolment, app_code(secret, clock.now, steps=-1)))[
        "status"
    ] == "approved"
    assert (await verify(client, enrolment, app_code(secret, clock.now, steps=2)))[
        "status"
    ] == "incorrect"
    assert (await verify(client, enrolment, app_code(secret, clock.now, steps=1)))[
        "status"
    ] == "approved"


async def test_a_window_of_zero_takes_only_the_current_step(
    factor_app: Callable[..., OtpApp], client_for: Clients, clock: FakeClock
) -> None:
    """With OTP_TOTP_WINDOW=0 the previous step's code is refused."""
    client = client_for(factor_app(factors=FactorSettings(totp_window=0)))
    secret, enrolment = await enrolled(client, clock.now)
    clock.advance(300)
    assert (await verify(client, enrolment, app_code(secret, clock.now, steps=-1)))[
        "status"
    ] == "incorrect"
    assert (await verify(client, enrolment, app_code(secret, clock.now)))["status"] == "approved"


@pytest.mark.parametrize(
    "options",
    [
        {"digits": 8},
        {"period": 60},
        {"algorithm": "SHA256"},
        {"algorithm": "SHA512", "digits": 8, "period": 60},
    ],
)
async def test_every_option_works_with_an_independent_app(
    client: httpx.AsyncClient, clock: FakeClock, options: dict[str, Any]
) -> None:
    """Enrolments with 8 digits, 60 s or SHA-256/512 verify pyotp's codes."""
    secret, enrolment = await enrolled(client, clock.now, **options)
    clock.advance(options.get("period", 30))
    code = app_code(secret, clock.now, **options)
    assert (await verify(client, enrolment, code))["status"] == "approved"


async def test_the_result_is_a_signed_totp_result(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Approval carries a result for the key, the subject, the nonce and method totp."""
    secret, enrolment = await enrolled(client, clock.now)
    clock.advance(30)
    answer = await verify(client, enrolment, app_code(secret, clock.now), nonce="login-42")
    claims = await decode_result(client, answer["result"], audience=KEY_ID, now=clock.now)
    assert claims["sub"] == SUBJECT
    assert claims["otp_method"] == "totp"
    assert claims["nonce"] == "login-42"
    assert "email" not in claims


async def test_a_pending_enrolment_expires_after_ten_minutes(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A pending token confirmed after 10 minutes answers expired."""
    started = await call(client, ENROL, {"subject": SUBJECT, "account": "ada@example.com"})
    clock.advance(601)
    code = app_code(started["secret"], clock.now)
    answer = await call(
        client, CONFIRM, {"subject": SUBJECT, "pending": started["pending"], "code": code}
    )
    assert answer == {"status": "expired"}


async def test_wrong_codes_lock_the_enrolment_before_comparing(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """After five wrong codes even the right one is locked out until the window ends."""
    secret, enrolment = await enrolled(client, clock.now)
    clock.advance(30)
    right = app_code(secret, clock.now)
    wrong = "000000" if right != "000000" else "111111"
    for _ in range(5):
        assert (await verify(client, enrolment, wrong))["status"] == "incorrect"
    locked = await verify(client, enrolment, right)
    assert locked["status"] == "locked"
    assert 0 < locked["retryAfter"] <= 900
    clock.advance(900)
    assert (await verify(client, enrolment, app_code(secret, clock.now)))["status"] == "approved"


async def test_a_correct_code_clears_the_failure_count(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Four wrong codes, a right one, then four more wrong ones never lock."""
    secret, enrolment = await enrolled(client, clock.now)
    for _ in range(2):
        clock.advance(30)
        right = app_code(secret, clock.now)
        wrong = "000000" if right != "000000" else "111111"
        for _ in range(4):
            assert (await verify(client, enrolment, wrong))["status"] == "incorrect"
        assert (await verify(client, enrolment, right))["status"] == "approved"


async def test_blobs_of_another_subject_kind_or_tampered_are_invalid(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Another subject's enrolment, a pending token, a tampered or junk blob: invalid."""
    secret, enrolment = await enrolled(client, clock.now)
    started = await call(client, ENROL, {"subject": SUBJECT, "account": "ada@example.com"})
    clock.advance(30)
    code = app_code(secret, clock.now)
    other = await call(client, VERIFY, {"subject": "user-2", "enrolment": enrolment, "code": code})
    assert other == {"status": "invalid"}
    flipped = enrolment[:20] + ("A" if enrolment[20] != "A" else "B") + enrolment[21:]
    for blob in (
        started["pending"],
        flipped,
        enrolment + "A",
        enrolment[:-3],
        "!" + enrolment,
        "x",
    ):
        assert (await verify(client, blob, code)) == {"status": "invalid"}, blob
    confirm = await call(client, CONFIRM, {"subject": SUBJECT, "pending": enrolment, "code": code})
    assert confirm == {"status": "invalid"}
    assert (await verify(client, enrolment, code))["status"] == "approved"


async def test_enrolments_survive_a_store_flush(
    factor_app: Callable[..., OtpApp],
    client_for: Clients,
    clock: FakeClock,
    store: str,
    request: pytest.FixtureRequest,
) -> None:
    """An enrolment made before the store was emptied still verifies afterwards."""
    first = client_for(factor_app())
    secret, enrolment = await enrolled(first, clock.now)
    if store == "redis":
        redis.Redis.from_url(request.getfixturevalue("redis_url")).flushdb()
    second = client_for(factor_app())  # A fresh memory store, or the flushed Redis.
    clock.advance(30)
    assert (await verify(second, enrolment, app_code(secret, clock.now)))["status"] == "approved"


async def test_master_key_rotation_reseals_and_never_fails(
    factor_app: Callable[..., OtpApp], client_for: Clients, clock: FakeClock
) -> None:
    """With the old key as previous, an old enrolment verifies and comes back re-sealed;
    without it, the old enrolment is invalid."""
    old = client_for(factor_app())
    secret, enrolment = await enrolled(old, clock.now)
    rotated_settings = ApiSettings(
        issuer=ISSUER, keys=api_keys(), previous_master_keys=(MASTER_KEY,)
    )
    rotated = client_for(factor_app(master_key=OTHER_MASTER_KEY, api=rotated_settings))
    clock.advance(30)
    answer = await verify(rotated, enrolment, app_code(secret, clock.now))
    assert answer["status"] == "approved"
    resealed = answer["enrolment"]
    assert resealed != enrolment
    forgotten = client_for(factor_app(master_key=OTHER_MASTER_KEY))
    clock.advance(30)
    assert (await verify(forgotten, enrolment, app_code(secret, clock.now))) == {
        "status": "invalid"
    }
    answer = await verify(forgotten, resealed, app_code(secret, clock.now))
    assert answer["status"] == "approved"
    assert "enrolment" not in answer


async def test_refusals_stay_http_errors_for_transport_problems(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """No key 401, a key without the scope 403, bad bodies 400/415, a malformed code 400."""
    _, enrolment = await enrolled(client, clock.now)
    body = {"subject": SUBJECT, "enrolment": enrolment, "code": "123456"}
    missing = await client.post(VERIFY, json=body)
    assert (missing.status_code, missing.json()["error"]) == (401, "API:UNAUTHORIZED")
    forbidden = await client.post(VERIFY, json=body, headers=auth(OTHER_API_KEY))
    assert (forbidden.status_code, forbidden.json()["error"]) == (403, "API:FORBIDDEN")
    for bad in (
        {**body, "extra": 1},
        {**body, "subject": ""},
        {**body, "subject": "x" * 129},
        {**body, "subject": "tab\there"},
        {**body, "code": 123456},
        {"subject": SUBJECT, "code": "123456"},
    ):
        response = await client.post(VERIFY, json=bad, headers=auth())
        assert (response.status_code, response.json()["error"]) == (400, "BODY:INVALID"), bad
    plain = await client.post(
        VERIFY, content=b"{}", headers={**auth(), "content-type": "text/plain"}
    )
    assert plain.status_code == 415
    for code in ("12345", "1234567", "12345a", "\u0661\u0662\u0663\u0664\u0665\u0666"):
        response = await client.post(VERIFY, json={**body, "code": code}, headers=auth())
        assert (response.status_code, response.json()["error"]) == (400, "OTP:INVALID_FORMAT")
    enrol = await client.post(
        ENROL, json={"subject": SUBJECT, "account": "a", "digits": 7}, headers=auth()
    )
    assert enrol.status_code == 400
    assert API_KEY not in enrol.text


async def test_a_right_code_racing_wrong_ones_keeps_exactly_once_and_the_lockout(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Ten copies of the right code race thirty wrong codes at once. The answers are those
    of some serial order: at most one approval; without one, every right copy was locked
    out and exactly five wrong codes were evaluated; with one, it cleared at most the four
    failures before it, and every failure after it still counts toward the lockout."""
    secret, enrolment = await enrolled(client, clock.now)
    clock.advance(30)
    right = app_code(secret, clock.now)
    wrong = "000000" if right != "000000" else "111111"
    codes = [right] * 10 + [wrong] * 30
    answers = await asyncio.gather(*(verify(client, enrolment, code) for code in codes))
    statuses = [answer["status"] for answer in answers]
    assert set(statuses) <= {"approved", "incorrect", "locked"}, statuses
    assert "approved" not in statuses[10:]
    charged = statuses.count("incorrect")
    still_counted = 5
    while (await verify(client, enrolment, wrong))["status"] == "incorrect":
        still_counted -= 1
    if statuses.count("approved") == 1:
        assert charged - still_counted <= 4, statuses
    else:
        assert statuses.count("approved") == 0, statuses
        assert statuses[:10] == ["locked"] * 10
        assert charged == still_counted == 5, statuses
