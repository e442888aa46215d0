"""`otpserver.client`: SPEC §10 wire shapes, errors, and result verification through a real JWKS.

The wire-shape tests drive the client against a stand-in that records what it receives and
answers with the shapes SPEC §10 fixes; `verify_result` runs against a real server process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from otpserver.client import Challenge, CheckOutcome, OtpApiError, OtpClient, key_id_of
from otpserver.otp.credentials import Credential
from otpserver.results.signer import ResultSigner
from otpserver.settings.api import ApiSettings
from otpserver.v1.keys import new_key
from tests.conftest import MASTER_KEY, MASTER_KEY_TEXT
from tests.support.process import ServerProcess

KEY, KEY_LINE = new_key("shop", ["challenges"])
ISSUER = "https://otp.test"
PENDING = {
    "challenge": "tok-1",
    "status": "pending",
    "credential": "ada@example.com",
    "channel": "email",
    "sent": True,
    "expires": "2027-01-15T08:05:00Z",
    "resendBlock": "2027-01-15T08:00:30Z",
    "attemptsLeft": 3,
    "resendsLeft": 3,
}


class StandIn:
    """Answers each `/v1/challenges` route with its SPEC §10 shape and records requests."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str], dict[str, Any]]] = []

    async def endpoint(self, request: Request) -> Response:
        body = await request.json()
        self.seen.append((request.url.path, dict(request.headers), body))
        path = request.url.path
        if path == "/v1/challenges":
            if body.get("email") == "limited@example.com":
                return JSONResponse(
                    {"error": "RATE:LIMITED", "message": "later", "retryAfter": 30},
                    status_code=429,
                    headers={"set-cookie": "x=1"},
                )
            return JSONResponse(PENDING, status_code=201, headers={"set-cookie": "x=1"})
        if path == "/v1/challenges/resend":
            return JSONResponse({**PENDING, "challenge": "tok-2"})
        if path == "/v1/challenges/check":
            if body["code"] == "000000":
                return JSONResponse(
                    {"status": "incorrect", "attemptsLeft": 2, "otpBlock": None, "challenge": "t3"}
                )
            return JSONResponse(
                {
                    "status": "approved",
                    "credential": "ada@example.com",
                    "channel": "email",
                    "result": "a.b.c",
                }
            )
        return JSONResponse({"status": "canceled"})

    def client(self) -> OtpClient:
        paths = ["/v1/challenges", *(f"/v1/challenges/{p}" for p in ("resend", "check", "cancel"))]
        app = Starlette(routes=[Route(p, self.endpoint, methods=["POST"]) for p in paths])
        return OtpClient(
            "https://otp.example.com", KEY, issuer=ISSUER, transport=httpx.ASGITransport(app=app)
        )


async def test_the_client_speaks_the_spec_wire_shapes() -> None:
    """Start, resend, check and cancel post the documented bodies with the bearer key and
    Idempotency-Key, parse the documented answers, and never send a cookie back."""
    stand_in = StandIn()
    async with stand_in.client() as otp:
        started = await otp.start(
            email="ada@example.com", end_user_ip="198.51.100.7", nonce="n1", idempotency_key="o-1"
        )
        resent = await otp.resend(started.challenge)
        assert isinstance(resent, Challenge)
        wrong = await otp.check(resent.challenge, "000000")
        right = await otp.check(wrong.challenge or "", "123456", nonce="n1", idempotency_key="o-2")
        canceled = await otp.cancel("t3")
    assert started.challenge == "tok-1"
    assert started.attempts_left == 3
    assert started.resend_block == "2027-01-15T08:00:30Z"
    assert resent.challenge == "tok-2"
    assert (wrong.status, wrong.attempts_left, wrong.challenge) == ("incorrect", 2, "t3")
    assert right.approved
    assert right.result == "a.b.c"
    assert canceled == "canceled"
    bodies = [(path, body) for path, _, body in stand_in.seen]
    assert bodies == [
        (
            "/v1/challenges",
            {"email": "ada@example.com", "end_user_ip": "198.51.100.7", "nonce": "n1"},
        ),
        ("/v1/challenges/resend", {"challenge": "tok-1"}),
        ("/v1/challenges/check", {"challenge": "tok-2", "code": "000000"}),
        ("/v1/challenges/check", {"challenge": "t3", "code": "123456", "nonce": "n1"}),
        ("/v1/challenges/cancel", {"challenge": "t3"}),
    ]
    headers = [h for _, h, _ in stand_in.seen]
    assert all(h["authorization"] == f"Bearer {KEY}" for h in headers)
    assert all("cookie" not in h for h in headers)
    assert [h.get("idempotency-key") for h in headers] == ["o-1", None, None, "o-2", None]


async def test_http_errors_raise_with_their_stable_code() -> None:
    """A 429 raises OtpApiError carrying RATE:LIMITED and the retry delay; a bad call to
    start is refused before anything is sent."""
    stand_in = StandIn()
    async with stand_in.client() as otp:
        with pytest.raises(OtpApiError) as raised:
            await otp.start(email="limited@example.com")
        with pytest.raises(ValueError, match="exactly one"):
            await otp.start(email="a@example.com", phone="+14155550100")
    assert raised.value.status == 429
    assert raised.value.code == "RATE:LIMITED"
    assert raised.value.retry_after == 30
    assert len(stand_in.seen) == 1


def test_the_key_id_is_the_default_audience() -> None:
    """The client reads its key id from the key; anything else is refused."""
    assert key_id_of(KEY) == "shop"
    with pytest.raises(ValueError, match="otpk_"):
        key_id_of("sk_live_123")


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """A real server whose JWKS the client fetches."""
    process = ServerProcess({"OTP_MASTER_KEY": MASTER_KEY_TEXT, "OTP_ISSUER": ISSUER})
    process.start()
    yield process
    process.stop()


def result(audience: str = "shop", nonce: str | None = "n1", issuer: str = ISSUER) -> str:
    """A result signed as the server (same master key) signs it."""
    signer = ResultSigner.from_settings(ApiSettings(issuer=issuer), MASTER_KEY, development=False)
    return signer.issue(
        audience=audience,
        subject=None,
        method="sms_code",
        credential=Credential("phone", "+14155550100"),
        nonce=nonce,
        now=time.time(),
    )


@pytest.mark.e2e
async def test_verify_result_checks_signature_audience_issuer_and_nonce(
    server: ServerProcess,
) -> None:
    """`verify_result` accepts the server's result for this key and refuses another
    audience, another issuer, a wrong nonce and a changed token."""
    async with OtpClient(server.url, KEY, issuer=ISSUER) as otp:
        claims = otp.verify_result(result(), nonce="n1")
        assert claims["phone_number"] == "+14155550100"
        assert (
            otp.verify_result(result("otp-browser"), audience="otp-browser")["aud"] == "otp-browser"
        )
        for bad, nonce in (
            (result("other"), None),
            (result(issuer="https://evil.test"), None),
            (result(), "n2"),
            (result()[:-3] + "AAA", None),
        ):
            with pytest.raises(jwt.PyJWTError):
                otp.verify_result(bad, nonce=nonce)


@pytest.fixture(scope="module")
def api_server() -> Iterator[ServerProcess]:
    """A real server with the challenge routes and this module's API key configured."""
    process = ServerProcess(
        {
            "OTP_MASTER_KEY": MASTER_KEY_TEXT,
            "OTP_ISSUER": ISSUER,
            "OTP_API_KEYS": KEY_LINE,
            "OTP_RESEND_COOLDOWN_SECONDS": "0",
        }
    )
    process.start()
    yield process
    process.stop()


@pytest.mark.e2e
async def test_the_client_drives_the_real_challenge_routes(api_server: ServerProcess) -> None:
    """Against a real server: start sends a code, a wrong code is `incorrect` with a new
    token, a resend replaces the code, the right one is `approved` with a result that
    `verify_result` accepts for this key and nonce, a spent token is `invalid`, and an
    idempotent retry of the approval replays it instead of failing."""
    async with OtpClient(api_server.url, KEY, issuer=ISSUER) as otp:
        started = await otp.start(email="grace@example.com", nonce="n-42")
        assert (started.status, started.sent, started.attempts_left) == ("pending", True, 3)
        wrong = await otp.check(started.challenge, "000000")
        assert (wrong.status, wrong.attempts_left) == ("incorrect", 2)
        assert wrong.challenge is not None
        resent = await otp.resend(wrong.challenge)
        assert isinstance(resent, Challenge)
        code = api_server.wait_for_code("grace@example.com", count=2)
        approved = await otp.check(resent.challenge, code, idempotency_key="login-1")
        again = await otp.check(resent.challenge, code, idempotency_key="login-1")
        spent = await otp.check(resent.challenge, code)
        stale = await otp.resend(started.challenge)
        other = await otp.start(phone="+14155550123")
        canceled = await otp.cancel(other.challenge)
        after_cancel = await otp.check(other.challenge, "123456")
    assert approved.approved
    assert approved.result is not None
    assert again.raw == approved.raw
    claims = otp.verify_result(approved.result, nonce="n-42")
    assert (claims["aud"], claims["email"], claims["otp_method"]) == (
        "shop",
        "grace@example.com",
        "email_code",
    )
    assert spent.status == "invalid"
    assert isinstance(stale, CheckOutcome)
    assert stale.status == "invalid"
    assert canceled == "canceled"
    assert after_cancel.status == "invalid"


@pytest.mark.e2e
async def test_the_client_raises_http_errors_of_the_real_server(api_server: ServerProcess) -> None:
    """A key the server does not know is OtpApiError 401 API:UNAUTHORIZED."""
    unknown, _ = new_key("shop", ["challenges"])
    async with OtpClient(api_server.url, unknown, issuer=ISSUER) as otp:
        with pytest.raises(OtpApiError) as raised:
            await otp.start(email="ada@example.com")
    assert (raised.value.status, raised.value.code) == (401, "API:UNAUTHORIZED")
