"""Helpers for the second-factor API tests: an API key, calls, and independent TOTP codes."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import jwt
import pyotp

from otpserver.settings.api import ApiKeyEntry
from tests.conftest import ISSUER

KEY_ID = "hostapp"
API_KEY = f"otpk_{KEY_ID}_" + "Q7x2Kp9LmN4vR8sT1wY6zA3bC5dE0fGh"
OTHER_KEY_ID = "otherapp"
OTHER_API_KEY = f"otpk_{OTHER_KEY_ID}_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4"
SUBJECT = "user-1"


def api_keys(*scopes: str) -> tuple[ApiKeyEntry, ...]:
    """The test key with `scopes` (both factors by default) and a second key with none of them."""
    chosen = frozenset(scopes or ("totp", "backup_codes"))
    return (
        ApiKeyEntry(KEY_ID, hashlib.sha256(API_KEY.encode()).digest(), chosen),
        ApiKeyEntry(
            OTHER_KEY_ID, hashlib.sha256(OTHER_API_KEY.encode()).digest(), frozenset({"devices"})
        ),
    )


def auth(key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def call(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST `body` with the test key; assert a 2xx and return the JSON answer."""
    response = await client.post(path, json=body, headers=auth())
    assert response.status_code in (200, 201), response.text
    answer: dict[str, Any] = response.json()
    return answer


def app_code(
    secret: str,
    now: float,
    *,
    digits: int = 6,
    period: int = 30,
    algorithm: str = "SHA1",
    steps: int = 0,
) -> str:
    """The code an authenticator app shows at `now` plus `steps` periods (pyotp's answer)."""
    totp = pyotp.TOTP(secret, digits=digits, interval=period, digest=algorithm.lower())
    return totp.at(int(now) + steps * period)


async def enrolled(
    client: httpx.AsyncClient, now: float, subject: str = SUBJECT, **options: Any
) -> tuple[str, str]:
    """Enrol and confirm `subject`'s authenticator at `now`: its secret and sealed enrolment."""
    started = await call(
        client, "/v1/totp/enrolments", {"subject": subject, "account": "ada@example.com", **options}
    )
    code = app_code(
        started["secret"],
        now,
        **{k: v for k, v in options.items() if k in ("digits", "period", "algorithm")},
    )
    confirmed = await call(
        client,
        "/v1/totp/enrolments/confirm",
        {"subject": subject, "pending": started["pending"], "code": code},
    )
    assert confirmed["status"] == "approved", confirmed
    return started["secret"], confirmed["enrolment"]


async def decode_result(
    client: httpx.AsyncClient, token: str, *, audience: str, now: float
) -> dict[str, Any]:
    """The claims of a signed result, checked the way a host would: PyJWT, the server's
    JWKS, EdDSA only, this audience and issuer. Time claims are checked against the test's
    clock (`now`), since PyJWT only knows the wall clock."""
    jwks = (await client.get("/.well-known/jwks.json")).json()
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWKSet.from_dict(jwks)[kid]
    claims: dict[str, Any] = jwt.decode(
        token,
        key.key,
        algorithms=["EdDSA"],
        audience=audience,
        issuer=ISSUER,
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    assert claims["iat"] <= now < claims["exp"] <= claims["iat"] + 300
    return claims
