"""Challenges over `/v1` (SPEC §10): the browser flow's rules, carried by a sealed token.

Every test runs on both stores. Results are checked as a host would: PyJWT, the served
JWKS, EdDSA only, the calling key as audience.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from otpserver.http.app import OtpApp
from otpserver.settings.api import ApiKeyEntry, ApiSettings
from otpserver.settings.overrides import LimitOverrides
from tests.conftest import ISSUER, AppFactory
from tests.support.factors import decode_result
from tests.support.fakes import FakeClock, RecordingSender

KEY_ID = "backend"
API_KEY = f"otpk_{KEY_ID}_" + "H4s9Jk2Lm7Np3Qr8St1Uv6Wx0Yz5Ab2C"
OTHER_ID = "otherbackend"
OTHER_KEY = f"otpk_{OTHER_ID}_" + "P0o9I8u7Y6t5R4e3W2q1A2s3D4f5G6h7"
FORWARDER_ID = "edgeproxy"
FORWARDER_KEY = f"otpk_{FORWARDER_ID}_" + "M1n2B3v4C5x6Z7l8K9j0H1g2F3d4S5a6"
SCOPELESS_ID = "nochallenges"
SCOPELESS_KEY = f"otpk_{SCOPELESS_ID}_" + "Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6"
EMAIL = "ada@example.com"

Clients = Callable[[OtpApp], httpx.AsyncClient]


def entry(key_id: str, key: str, *scopes: str) -> ApiKeyEntry:
    return ApiKeyEntry(key_id, hashlib.sha256(key.encode()).digest(), frozenset(scopes))


API = ApiSettings(
    issuer=ISSUER,
    keys=(
        entry(KEY_ID, API_KEY, "challenges"),
        entry(OTHER_ID, OTHER_KEY, "challenges"),
        entry(FORWARDER_ID, FORWARDER_KEY, "challenges", "forward_ip"),
        entry(SCOPELESS_ID, SCOPELESS_KEY, "totp"),
    ),
)


def bearer(key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def backend(make_app: AppFactory, store: str, client_for: Clients) -> httpx.AsyncClient:
    """A client of a production app with the test API keys, on each store."""
    return client_for(make_app(store, api=API))


async def post(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], key: str = API_KEY, **kw: Any
) -> httpx.Response:
    return await client.post(path, json=body, headers={**bearer(key), **kw.pop("headers", {})})


async def start(client: httpx.AsyncClient, key: str = API_KEY, **body: Any) -> dict[str, Any]:
    """Create a challenge for `EMAIL` (or what `body` names); the 201 answer."""
    response = await post(client, "/v1/challenges", {"email": EMAIL, **body}, key)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def check(
    client: httpx.AsyncClient, challenge: str, code: str, key: str = API_KEY, **extra: Any
) -> dict[str, Any]:
    response = await post(
        client, "/v1/challenges/check", {"challenge": challenge, "code": code, **extra}, key
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def wrong(code: str) -> str:
    return "".join("1" if c == "0" else "0" for c in code)


async def test_create_sends_a_code_and_answers_the_pending_state(
    backend: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """201 with the token and the public state; exactly one code went to the address."""
    answer = await start(backend)
    assert answer["status"] == "pending"
    assert answer["credential"] == EMAIL
    assert answer["channel"] == "email"
    assert answer["sent"] is True
    assert answer["attemptsLeft"] == 3
    assert answer["resendsLeft"] == 3
    assert set(answer) == {
        "challenge",
        "status",
        "credential",
        "channel",
        "sent",
        "expires",
        "resendBlock",
        "attemptsLeft",
        "resendsLeft",
    }
    assert [m.credential.address for m in sender.sent] == [EMAIL]
    assert sender.last_code not in answer["challenge"]


async def test_the_right_code_is_approved_with_a_result_for_the_calling_key(
    backend: httpx.AsyncClient, sender: RecordingSender, clock: FakeClock
) -> None:
    """approved, with a result PyJWT verifies through the JWKS: aud is the key, the nonce
    given at create is bound, the address is the OIDC email claim."""
    answer = await start(backend, nonce="n-123")
    approved = await check(backend, answer["challenge"], sender.last_code)
    assert approved["status"] == "approved"
    assert approved["credential"] == EMAIL
    assert approved["channel"] == "email"
    claims = await decode_result(backend, approved["result"], audience=KEY_ID, now=clock())
    assert claims["email"] == EMAIL
    assert claims["email_verified"] is True
    assert claims["otp_method"] == "email_code"
    assert claims["nonce"] == "n-123"


async def test_a_nonce_given_at_check_is_bound_instead(
    backend: httpx.AsyncClient, sender: RecordingSender, clock: FakeClock
) -> None:
    """The check's own nonce goes into the result when the caller gives one there."""
    answer = await start(backend, nonce="from-create")
    approved = await check(backend, answer["challenge"], sender.last_code, nonce="from-check")
    claims = await decode_result(backend, approved["result"], audience=KEY_ID, now=clock())
    assert claims["nonce"] == "from-check"


async def test_a_wrong_code_rotates_the_token_and_the_old_one_is_dead(
    backend: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """incorrect with one attempt fewer and a new token; the old token is invalid even with
    the right code; the new token still verifies the right code."""
    first = (await start(backend))["challenge"]
    incorrect = await check(backend, first, wrong(sender.last_code))
    assert incorrect["status"] == "incorrect"
    assert incorrect["attemptsLeft"] == 2
    assert incorrect["otpBlock"] is None
    assert incorrect["challenge"] != first
    assert (await check(backend, first, sender.last_code))["status"] == "invalid"
    assert (await check(backend, incorrect["challenge"], sender.last_code))["status"] == (
        "approved"
    )


async def test_every_earlier_token_is_invalid_and_costs_nothing(
    backend: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """Replaying each token of a session after it moved on: invalid, and the current token
    keeps every attempt it had."""
    seen = [(await start(backend))["challenge"]]
    code = sender.last_code
    seen.append((await check(backend, seen[-1], wrong(code)))["challenge"])
    for old in seen[:-1]:
        assert (await check(backend, old, wrong(code)))["status"] == "invalid"
    after = await check(backend, seen[-1], wrong(code))
    assert after["attemptsLeft"] == 1


async def test_a_token_of_another_key_tampered_or_garbage_is_invalid(
    backend: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """Another key's token, a flipped character, and text that is no token: invalid."""
    token = (await start(backend))["challenge"]
    code = sender.last_code
    assert (await check(backend, token, code, key=OTHER_KEY))["status"] == "invalid"
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    assert (await check(backend, flipped, code))["status"] == "invalid"
    assert (await check(backend, "not-a-token", code))["status"] == "invalid"
    assert (await check(backend, token, code))["status"] == "approved"


async def test_resend_sends_a_new_code_and_kills_the_old_code_and_token(
    make_app: AppFactory, store: str, client_for: Clients, sender: RecordingSender
) -> None:
    """A resend answers a new token; the first code is then incorrect, the new one approved,
    and the token before the resend invalid."""
    client = client_for(make_app(store, api=API, policy_overrides={"resend_cooldown_seconds": 0}))
    first = (await start(client))["challenge"]
    old_code = sender.last_code
    resent = await post(client, "/v1/challenges/resend", {"challenge": first})
    assert resent.status_code == 200, resent.text
    body = resent.json()
    assert body["status"] == "pending"
    assert body["resendsLeft"] == 2
    assert len(sender.sent) == 2
    assert (await check(client, first, sender.last_code))["status"] == "invalid"
    incorrect = await check(client, body["challenge"], old_code)
    assert incorrect["status"] == "incorrect"
    assert (await check(client, incorrect["challenge"], sender.last_code))["status"] == ("approved")


async def test_resend_inside_the_cooldown_is_429_and_the_token_stays_good(
    backend: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """Too early: 429 OTP:RESEND_NOT_ALLOWED with Retry-After, nothing sent, token intact."""
    token = (await start(backend))["challenge"]
    refused = await post(backend, "/v1/challenges/resend", {"challenge": token})
    assert refused.status_code == 429
    assert refused.json()["error"] == "OTP:RESEND_NOT_ALLOWED"
    assert "retry-after" in refused.headers
    assert len(sender.sent) == 1
    assert (await check(backend, token, sender.last_code))["status"] == "approved"


async def test_expired_blocked_and_too_many_attempts_are_statuses(
    backend: httpx.AsyncClient, sender: RecordingSender, clock: FakeClock
) -> None:
    """A second wrong code blocks for a moment (`blocked`, same token), the third spends the
    last attempt (`too_many_attempts` afterwards), and a code past its lifetime `expired`."""
    token = (await start(backend))["challenge"]
    code = sender.last_code
    token = (await check(backend, token, wrong(code)))["challenge"]
    second = await check(backend, token, wrong(code))
    assert second["otpBlock"] is not None
    blocked = await check(backend, second["challenge"], code)
    assert blocked["status"] == "blocked"
    assert blocked["retryAfter"] == 5
    assert blocked["challenge"] == second["challenge"]
    clock.advance(5)
    third = await check(backend, second["challenge"], wrong(code))
    assert third["attemptsLeft"] == 0
    assert (await check(backend, third["challenge"], code))["status"] == "too_many_attempts"

    late = (await start(backend, email="late@example.com"))["challenge"]
    clock.advance(301)
    assert (await check(backend, late, sender.last_code))["status"] == "expired"


async def test_a_locked_credential_is_a_status_with_retry_after(
    make_app: AppFactory, store: str, client_for: Clients, sender: RecordingSender
) -> None:
    """Once the credential is locked, even the right code on a challenge sent before answers
    `locked` with retryAfter (and a token that still holds the code), and no new code goes out."""
    client = client_for(
        make_app(store, api=API, limit_overrides=LimitOverrides(numbers={"max_failures": 2}))
    )
    started = [await start(client) for _ in range(3)]
    codes = [m.code for m in sender.sent]
    for answer, code in zip(started[:2], codes[:2], strict=True):
        assert (await check(client, answer["challenge"], wrong(code)))["status"] == "incorrect"
    locked = await check(client, started[2]["challenge"], codes[2])
    assert locked["status"] == "locked"
    assert locked["retryAfter"] > 0
    assert locked["challenge"] != started[2]["challenge"]
    refused = await post(client, "/v1/challenges", {"email": EMAIL})
    assert refused.status_code == 429
    assert len(sender.sent) == 3


async def test_cancel_kills_every_copy_of_the_token(
    backend: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """canceled; afterwards the token is invalid for check and for another cancel."""
    token = (await start(backend))["challenge"]
    canceled = await post(backend, "/v1/challenges/cancel", {"challenge": token})
    assert canceled.status_code == 200
    assert canceled.json() == {"status": "canceled"}
    assert (await check(backend, token, sender.last_code))["status"] == "invalid"
    again = await post(backend, "/v1/challenges/cancel", {"challenge": token})
    assert again.json() == {"status": "invalid"}


async def test_an_idempotent_create_sends_once_and_replays_byte_for_byte(
    backend: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """The same Idempotency-Key and body: one send, the same answer bytes; another body 422."""
    headers = {"Idempotency-Key": "create-1"}
    first = await post(backend, "/v1/challenges", {"email": EMAIL}, headers=headers)
    again = await post(backend, "/v1/challenges", {"email": EMAIL}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.content == again.content
    assert len(sender.sent) == 1
    other = await post(backend, "/v1/challenges", {"email": "x@example.com"}, headers=headers)
    assert other.status_code == 422
    assert other.json()["error"] == "IDEMPOTENCY:MISMATCH"


async def test_an_idempotent_check_approves_once_and_replays_the_same_result(
    backend: httpx.AsyncClient, sender: RecordingSender
) -> None:
    """A retried check gets the very same approval (same result, same jti): it ran once."""
    token = (await start(backend))["challenge"]
    headers = {"Idempotency-Key": "check-1"}
    body = {"challenge": token, "code": sender.last_code}
    first = await post(backend, "/v1/challenges/check", body, headers=headers)
    again = await post(backend, "/v1/challenges/check", body, headers=headers)
    assert first.json()["status"] == "approved"
    assert first.content == again.content
    without_key = await post(backend, "/v1/challenges/check", body)
    assert without_key.json()["status"] == "invalid"


async def test_keys_are_required_and_scoped(backend: httpx.AsyncClient) -> None:
    """No key or an unknown one: 401 with WWW-Authenticate; a key without the scope: 403."""
    missing = await backend.post("/v1/challenges", json={"email": EMAIL})
    assert missing.status_code == 401
    assert missing.json()["error"] == "API:UNAUTHORIZED"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    unknown = await post(backend, "/v1/challenges", {"email": EMAIL}, key=API_KEY[:-1] + "x")
    assert unknown.status_code == 401
    forbidden = await post(backend, "/v1/challenges", {"email": EMAIL}, key=SCOPELESS_KEY)
    assert forbidden.status_code == 403
    assert forbidden.json()["error"] == "API:FORBIDDEN"


async def test_bad_bodies_are_clear_400s(backend: httpx.AsyncClient) -> None:
    """Unknown fields, a bad address, a malformed code and a non-object: stable 4xx codes."""
    unknown = await post(backend, "/v1/challenges", {"email": EMAIL, "admin": True})
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "CREDENTIAL:INVALID"
    bad_address = await post(backend, "/v1/challenges", {"email": "nobody"})
    assert bad_address.json()["error"] == "CREDENTIAL:INVALID"
    token = (await start(backend))["challenge"]
    bad_code = await post(
        backend, "/v1/challenges/check", {"challenge": token, "code": "\u0661" * 6}
    )
    assert bad_code.status_code == 400
    assert bad_code.json()["error"] == "OTP:INVALID_FORMAT"
    not_object = await backend.post(
        "/v1/challenges/cancel",
        content=b"[1]",
        headers={**bearer(), "content-type": "application/json"},
    )
    assert not_object.status_code == 400
    form = await backend.post("/v1/challenges/cancel", data={"challenge": token}, headers=bearer())
    assert form.status_code == 415


async def test_forwarded_end_user_addresses_key_the_limits_only_for_forward_ip_keys(
    make_app: AppFactory, store: str, client_for: Clients
) -> None:
    """A forward_ip key's end_user_ip is the limit bucket; another key's is ignored."""
    client = client_for(
        make_app(store, api=API, limit_overrides=LimitOverrides(numbers={"address_requests": 1}))
    )
    await start(client, FORWARDER_KEY, email="a1@example.com", end_user_ip="203.0.113.1")
    same_user = await post(
        client,
        "/v1/challenges",
        {"email": "a2@example.com", "end_user_ip": "203.0.113.1"},
        FORWARDER_KEY,
    )
    assert same_user.status_code == 429
    await start(client, FORWARDER_KEY, email="a3@example.com", end_user_ip="203.0.113.2")
    # Without forward_ip the field is ignored: the calling server's own bucket counts.
    await start(client, API_KEY, email="b1@example.com", end_user_ip="203.0.113.3")
    ignored = await post(
        client, "/v1/challenges", {"email": "b2@example.com", "end_user_ip": "203.0.113.4"}
    )
    assert ignored.status_code == 429


async def test_v1_never_answers_cors_and_ignores_cookies(
    make_app: AppFactory, store: str, client_for: Clients
) -> None:
    """An allowed browser origin gets no CORS headers on /v1, and a cookie changes nothing."""
    client = client_for(make_app(store, api=API, cors_origins=("https://app.example.com",)))
    answer = await post(
        client,
        "/v1/challenges",
        {"email": EMAIL},
        headers={"origin": "https://app.example.com", "cookie": "__Host-otp=junk"},
    )
    assert answer.status_code == 201
    assert "access-control-allow-origin" not in answer.headers
    preflight = await client.options(
        "/v1/challenges", headers={"origin": "https://app.example.com"}
    )
    assert "access-control-allow-origin" not in preflight.headers


async def test_invalid_creates_are_metered_like_served_ones(
    make_app: AppFactory, store: str, client_for: Clients
) -> None:
    """Refused creates count against the caller's address: once it is spent, even a valid
    create is 429, as in the browser flow."""
    client = client_for(
        make_app(store, api=API, limit_overrides=LimitOverrides(numbers={"address_requests": 2}))
    )
    answers = [
        (await post(client, "/v1/challenges", {"email": "not an address"})).status_code
        for _ in range(3)
    ]
    assert answers == [400, 400, 429]
    refused = await post(client, "/v1/challenges", {"email": EMAIL})
    assert refused.status_code == 429
