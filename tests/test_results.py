"""Signed results (SPEC §11, SECURITY.md 58), verified with PyJWT, never with the server's code.

The module's real server process serves the JWKS that PyJWT's `PyJWKClient` fetches; results
come from its browser flow and from signers built here with the same master key, which
proves that every instance signs alike with nothing shared but the key.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jwt import PyJWKClient, PyJWKSet

from otpserver.encoding import b64url
from otpserver.errors import ConfigError
from otpserver.http.app import OtpApp, create_app
from otpserver.otp.credentials import Credential
from otpserver.results.keys import PeriodKey
from otpserver.results.signer import ResultSigner
from otpserver.settings.api import ApiSettings
from otpserver.settings.environment import Settings
from tests.conftest import MASTER_KEY, MASTER_KEY_TEXT, PUBLIC_SITE, AppFactory, test_hooks
from tests.support.api import Browser
from tests.support.fakes import FakeClock, RecordingSender
from tests.support.hooks import HOOKS
from tests.support.process import ServerProcess

ISSUER = "https://otp.test"
OLD_KEY = bytes(range(50, 82))
PERIOD = 604800
ADA = Credential("email", "ada@example.com")
PHONE = Credential("phone", "+14155550100")
CLAIMS = {"iss", "aud", "sub", "iat", "exp", "jti", "auth_time", "amr", "otp_method"}


def signer(master_key: bytes = MASTER_KEY, **settings: Any) -> ResultSigner:
    """A signer configured as the server process below is."""
    api = ApiSettings(issuer=ISSUER, **settings)
    return ResultSigner.from_settings(api, master_key, development=False)


def b64json(part: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return data


def reencode(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """One real server (development, memory store) with a fixed master key and issuer."""
    process = ServerProcess({"OTP_MASTER_KEY": MASTER_KEY_TEXT, "OTP_ISSUER": ISSUER})
    process.start()
    yield process
    process.stop()


@pytest.fixture
def jwks_client(server: ServerProcess) -> PyJWKClient:
    """PyJWT's own JWKS client, pointed at the real server."""
    return PyJWKClient(f"{server.url}/.well-known/jwks.json")


def decode(client: PyJWKClient, token: str, audience: str) -> dict[str, Any]:
    """What a host backend does: EdDSA only, audience and issuer required."""
    key = client.get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=["EdDSA"],
        audience=audience,
        issuer=ISSUER,
        options={"require": ["exp", "iat", "jti", "sub"]},
    )
    return claims


@pytest.mark.e2e
def test_browser_result_verifies_through_the_served_jwks(
    server: ServerProcess, jwks_client: PyJWKClient
) -> None:
    """A code verified in the browser flow of a real server yields a result that PyJWT
    accepts through the JWKS, with exactly the claims of SPEC §11."""
    with httpx.Client(base_url=server.url) as client:
        assert client.post("/api/otp/create", json={"email": "ada@example.com"}).status_code == 200
        code = server.wait_for_code("ada@example.com")
        verified = client.post("/api/otp/verify", data={"otp": code})
    assert verified.status_code == 200
    token = verified.json()["result"]
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "EdDSA", "kid": header["kid"], "typ": "otp-result+jwt"}
    claims = decode(jwks_client, token, "otp-browser")
    assert set(claims) == CLAIMS | {"email", "email_verified"}
    assert claims["email"] == "ada@example.com"
    assert claims["email_verified"] is True
    assert claims["amr"] == ["otp"]
    assert claims["otp_method"] == "email_code"
    assert claims["exp"] - claims["iat"] == 120
    assert claims["auth_time"] == claims["iat"]
    assert abs(claims["iat"] - time.time()) < 60
    assert "ada" not in claims["sub"]


@pytest.mark.e2e
def test_another_instance_with_the_same_key_signs_alike(jwks_client: PyJWKClient) -> None:
    """A signer built elsewhere from the same master key signs results the server's JWKS
    verifies: no store, no election, with the host's subject and nonce bound."""
    token = signer().issue(
        audience="shop",
        subject="user-42",
        method="sms_code",
        credential=PHONE,
        nonce="n-0S6_WzA2Mj",
        now=time.time(),
    )
    claims = decode(jwks_client, token, "shop")
    assert set(claims) == CLAIMS | {"phone_number", "phone_number_verified", "nonce"}
    assert claims["sub"] == "user-42"
    assert claims["phone_number"] == "+14155550100"
    assert claims["phone_number_verified"] is True
    assert claims["amr"] == ["sms"]
    assert claims["nonce"] == "n-0S6_WzA2Mj"


@pytest.mark.e2e
def test_tampered_expired_and_misaddressed_results_are_refused(jwks_client: PyJWKClient) -> None:
    """PyJWT refuses a changed claim, an expired result, another audience and another issuer."""
    now = time.time()
    good = signer().issue(
        audience="shop", subject=None, method="email_code", credential=ADA, nonce=None, now=now
    )
    head, body, signature = good.split(".")
    claims = b64json(body)
    claims["email"] = "eve@example.com"
    with pytest.raises(jwt.InvalidSignatureError):
        decode(jwks_client, f"{head}.{reencode(claims)}.{signature}", "shop")
    expired = signer().issue(
        audience="shop",
        subject=None,
        method="email_code",
        credential=ADA,
        nonce=None,
        now=now - 200,
    )
    with pytest.raises(jwt.ExpiredSignatureError):
        decode(jwks_client, expired, "shop")
    with pytest.raises(jwt.InvalidAudienceError):
        decode(jwks_client, good, "other-shop")
    foreign = ResultSigner.from_settings(
        ApiSettings(issuer="https://evil.test"), MASTER_KEY, development=False
    ).issue(audience="shop", subject=None, method="email_code", credential=ADA, nonce=None, now=now)
    with pytest.raises(jwt.InvalidIssuerError):
        decode(jwks_client, foreign, "shop")


@pytest.mark.e2e
def test_only_eddsa_is_accepted(jwks_client: PyJWKClient, server: ServerProcess) -> None:
    """An HMAC token keyed with the public key and an unsigned token, both claiming a
    published kid, are refused by a backend that accepts EdDSA alone."""
    good = signer().issue(
        audience="shop",
        subject=None,
        method="email_code",
        credential=ADA,
        nonce=None,
        now=time.time(),
    )
    head, body, _ = good.split(".")
    kid = b64json(head)["kid"]
    jwk = next(
        k
        for k in httpx.get(f"{server.url}/.well-known/jwks.json").json()["keys"]
        if k["kid"] == kid
    )
    hmac_key = jwk["x"].encode()
    forged = jwt.encode(b64json(body), hmac_key, algorithm="HS256", headers={"kid": kid})
    with pytest.raises(jwt.PyJWTError):
        decode(jwks_client, forged, "shop")
    unsigned = f"{reencode({'alg': 'none', 'kid': kid, 'typ': 'otp-result+jwt'})}.{body}."
    with pytest.raises(jwt.PyJWTError):
        decode(jwks_client, unsigned, "shop")


@pytest.mark.e2e
def test_jwks_lists_three_public_keys_with_a_short_cache(server: ServerProcess) -> None:
    """The JWKS holds the previous, current and next periods' Ed25519 public keys (no
    private part) and may be cached for at most a third of a period."""
    response = httpx.get(f"{server.url}/.well-known/jwks.json")
    assert response.status_code == 200
    keys = response.json()["keys"]
    assert len(keys) == 3
    assert len({k["kid"] for k in keys}) == 3
    for key in keys:
        assert set(key) == {"kty", "crv", "x", "kid", "use", "alg"}
        assert (key["kty"], key["crv"], key["alg"], key["use"]) == (
            "OKP",
            "Ed25519",
            "EdDSA",
            "sig",
        )
    cache = response.headers["cache-control"]
    assert cache.startswith("public, max-age=")
    assert 0 < int(cache.rpartition("=")[2]) <= PERIOD // 3
    assert httpx.post(f"{server.url}/.well-known/jwks.json").status_code == 404


@pytest.mark.e2e
def test_a_cached_jwks_already_holds_the_next_period_key(server: ServerProcess) -> None:
    """A key set fetched now verifies results signed after the next rotation, so verifiers
    that honour the cache lifetime never meet an unknown key."""
    keys = PyJWKSet.from_dict(httpx.get(f"{server.url}/.well-known/jwks.json").json())
    later = time.time() + PERIOD
    token = signer().issue(
        audience="shop", subject="u", method="totp", credential=None, nonce=None, now=later
    )
    kid = jwt.get_unverified_header(token)["kid"]
    claims = jwt.decode(
        token,
        keys[kid],
        algorithms=["EdDSA"],
        audience="shop",
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    assert claims["otp_method"] == "totp"
    assert claims["amr"] == ["otp"]
    assert "email" not in claims


async def test_browser_results_verify_on_both_stores(
    make_app: AppFactory,
    client_for: Callable[[OtpApp], httpx.AsyncClient],
    sender: RecordingSender,
    store: str,
) -> None:
    """On either store, the default final hook returns a result that PyJWT verifies with
    the app's own JWKS, for the configured browser audience."""
    app = make_app(store, api=ApiSettings(issuer=ISSUER, result_audience="www"))
    client = client_for(app)
    browser = Browser(client)
    await browser.create("ada@example.com")
    token = (await browser.verify(sender.last_code)).json()["result"]
    keys = PyJWKSet.from_dict((await client.get("/.well-known/jwks.json")).json())
    kid = jwt.get_unverified_header(token)["kid"]
    claims = jwt.decode(
        token,
        keys[kid],
        algorithms=["EdDSA"],
        audience="www",
        issuer=ISSUER,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["email"] == "ada@example.com"


def test_every_result_has_its_own_jti() -> None:
    """A thousand results of one instant carry a thousand different `jti`."""
    issuing = signer()
    tokens = [
        issuing.issue(
            audience="a", subject="s", method="totp", credential=None, nonce=None, now=1.0
        )
        for _ in range(1000)
    ]
    assert len({b64json(t.split(".")[1])["jti"] for t in tokens}) == 1000


def test_subject_defaults_to_a_keyed_hash_of_the_credential() -> None:
    """Without a host subject, `sub` is stable for one credential, differs between
    credentials and channels, and changes with the signing secret."""
    one, other = signer(), signer(master_key=OLD_KEY)
    assert one.credential_subject(ADA) == one.credential_subject(Credential("email", ADA.address))
    assert one.credential_subject(ADA) != one.credential_subject(PHONE)
    assert one.credential_subject(ADA) != one.credential_subject(Credential("phone", ADA.address))
    assert one.credential_subject(ADA) != other.credential_subject(ADA)


RFC8032_TEST_2 = {
    "seed": "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
    "public": "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
    "message": "72",
    "signature": "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
    "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
}
"""RFC 8032 §7.1, TEST 2."""


def test_results_are_signed_as_rfc_8032_and_openssl_sign() -> None:
    """libsodium signs the results: it gives the RFC's known answer, and for any message
    the same bytes as `cryptography`, whose key publishes the JWK."""
    vector = {name: bytes.fromhex(text) for name, text in RFC8032_TEST_2.items()}
    key = PeriodKey.from_seed(vector["seed"])
    assert key.sign(vector["message"]) == vector["signature"]
    assert key.sodium_secret[32:] == vector["public"]
    for message in (b"", b"header.claims", bytes(range(256)) * 5):
        assert key.sign(message) == key.private_key.sign(message)


@given(st.binary(max_size=200))
def test_parts_are_base64url_without_padding(data: bytes) -> None:
    """RFC 7515 §2's encoding, as the standard library spells it."""
    assert b64url(data) == base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_signing_seed_replaces_the_master_key() -> None:
    """With OTP_SIGNING_SEED, keys follow the seed: another master key signs the same kid."""
    seed = bytes(range(7, 39))
    one = signer(signing_seed=seed).keys.signing_key(1.0).kid
    assert one == signer(master_key=OLD_KEY, signing_seed=seed).keys.signing_key(1.0).kid
    assert one != signer().keys.signing_key(1.0).kid


def test_previous_master_keys_stay_published() -> None:
    """After a master-key rotation, results signed under the old key still verify with
    PyJWT against the new JWKS, which lists both keys' periods."""
    old = signer(master_key=OLD_KEY).issue(
        audience="a", subject="s", method="totp", credential=None, nonce=None, now=1000.0
    )
    rotated = signer(previous_master_keys=(OLD_KEY,))
    jwks = rotated.jwks(1000.0)
    assert len(jwks["keys"]) == 6
    keys = PyJWKSet.from_dict(jwks)
    claims = jwt.decode(
        old,
        keys[jwt.get_unverified_header(old)["kid"]],
        algorithms=["EdDSA"],
        audience="a",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["sub"] == "s"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"OTP_RESULT_TTL_SECONDS": "301"}, "OTP_RESULT_TTL_SECONDS"),
        ({"OTP_RESULT_TTL_SECONDS": "0"}, "OTP_RESULT_TTL_SECONDS"),
        ({"OTP_SIGNING_SEED": "c2hvcnQ"}, "OTP_SIGNING_SEED"),
        ({"OTP_SIGNING_PERIOD_SECONDS": "60"}, "OTP_SIGNING_PERIOD_SECONDS"),
        ({"OTP_ISSUER": "bad\nissuer"}, "OTP_ISSUER"),
        (
            {"OTP_RESULT_AUDIENCE": "shop1", "OTP_API_KEYS": f"shop1:{'a' * 64}:challenges"},
            "OTP_RESULT_AUDIENCE",
        ),
    ],
)
def test_bad_result_settings_are_refused(env: dict[str, str], variable: str) -> None:
    """A lifetime above 300 s, a short seed, a tiny period, an unprintable issuer or a
    browser audience equal to an API key id stop start-up naming the variable."""
    with pytest.raises(ConfigError, match=variable):
        ApiSettings.from_env(env)


def test_production_requires_an_issuer() -> None:
    """Without OTP_ISSUER, production refuses to start."""
    settings = Settings(master_key=MASTER_KEY, delivery=PUBLIC_SITE)
    hooks = test_hooks(HOOKS, FakeClock(), RecordingSender())
    with pytest.raises(ConfigError, match="OTP_ISSUER"):
        create_app(settings, hooks)


def test_every_api_setting_problem_is_reported_at_once() -> None:
    """Bad API keys, lifetime, seed and previous master key are listed together, each
    naming its variable, beside the other settings' problems."""
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(
            {
                "OTP_API_KEYS": "shop:abc:challenges",
                "OTP_RESULT_TTL_SECONDS": "900",
                "OTP_SIGNING_SEED": "short",
                "OTP_MASTER_KEY_PREVIOUS": "also-short",
                "OTP_PORT": "http",
            }
        )
    text = str(raised.value)
    for variable in (
        "OTP_API_KEYS",
        "OTP_RESULT_TTL_SECONDS",
        "OTP_SIGNING_SEED",
        "OTP_MASTER_KEY_PREVIOUS",
        "OTP_PORT",
    ):
        assert variable in text
