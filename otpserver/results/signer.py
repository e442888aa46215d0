"""Issuing results: the claims of SPEC §11 in a compact JWS signed with Ed25519 (`EdDSA`).

A result tells the host's backend, in a form it can check offline against the JWKS, that
someone just proved control of a credential (or an authenticator) for this audience. It is
short-lived (`exp` at most 300 s after `iat`), unique (`jti`) and carries nothing beyond the
verified credential: no client address, no user agent, no code.

The JWS is built with `cryptography` directly: it is three base64url parts and one Ed25519
signature, and keeping the server free of a JWT library leaves no `alg` negotiation or key
confusion to get wrong. Tests verify every result with PyJWT, an independent implementation.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_json

from otpserver.crypto.mac import hmac_sha256
from otpserver.encoding import b64url
from otpserver.errors import ConfigError
from otpserver.otp.credentials import Credential
from otpserver.results.keys import SigningKeys, derive_secret
from otpserver.settings.api import MAX_RESULT_TTL_SECONDS, ApiSettings

RESULT_TYPE = "otp-result+jwt"
LINK_METHOD = "link"
"""`otp_method` of a code presented by its sign-in link (SPEC §18) rather than typed."""
METHODS: frozenset[str] = frozenset({"email_code", "sms_code", "totp", "backup_code", LINK_METHOD})
"""`otp_method` values of the built-in factors; a channel a fork adds yields `<channel>_code`."""
_AMR: Mapping[str, tuple[str, ...]] = {
    # RFC 8176 §2 registered values only: "sms" is confirmation by text message, "otp" a
    # one-time password (an emailed code, a TOTP, a backup code, a link presenting a code).
    "sms_code": ("sms",),
    "email_code": ("otp",),
    "totp": ("otp",),
    "backup_code": ("otp",),
    LINK_METHOD: ("otp",),
}
_OIDC_CLAIMS: Mapping[str, tuple[str, str]] = {
    "email": ("email", "email_verified"),
    "phone": ("phone_number", "phone_number_verified"),
}
DEVELOPMENT_ISSUER = "otpserver-development"


def code_method(channel: str, *, via_link: bool = False) -> str:
    """The `otp_method` of a code sent over `channel`: typed, or presented by its sign-in
    link (`LINK_METHOD`)."""
    if via_link:
        return LINK_METHOD
    return {"email": "email_code", "phone": "sms_code"}.get(channel, f"{channel}_code")


@dataclass(frozen=True, slots=True)
class ResultSigner:
    """Signs results for an issuer; `browser_audience` is the browser flow's `aud`."""

    keys: SigningKeys
    issuer: str
    ttl_seconds: int
    subject_key: bytes
    browser_audience: str

    @classmethod
    def from_settings(
        cls, api: ApiSettings, master_key: bytes, *, development: bool
    ) -> ResultSigner:
        """The signer a deployment configures; production must name its issuer."""
        if api.issuer is None and not development:
            raise ConfigError(
                "OTP_ISSUER is required in production: the iss claim of signed results"
            )
        # A separate seed survives master-key rotations; else keys from the previous master
        # keys stay published so results signed just before a rotation still verify.
        secret = api.signing_seed or master_key
        previous = () if api.signing_seed else api.previous_master_keys
        return cls(
            keys=SigningKeys(secret, api.signing_period_seconds, previous),
            issuer=api.issuer or DEVELOPMENT_ISSUER,
            ttl_seconds=min(api.result_ttl_seconds, MAX_RESULT_TTL_SECONDS),
            subject_key=derive_secret(secret, b"result subject"),
            browser_audience=api.result_audience,
        )

    def credential_subject(self, credential: Credential) -> str:
        """`sub` when the host named no subject: a keyed hash of the credential, stable for
        one signing secret, that reveals nothing of the address to whoever reads it."""
        message = credential.channel.encode() + b"\x00" + credential.address.encode()
        return b64url(hmac_sha256(self.subject_key, message)[:16])

    def issue(
        self,
        *,
        audience: str,
        subject: str | None,
        method: str,
        credential: Credential | None,
        nonce: str | None,
        now: float,
    ) -> str:
        """The compact JWS of one approval at `now` for `audience`."""
        if subject is None:
            if credential is None:
                raise ValueError("a result names a subject or a credential")
            subject = self.credential_subject(credential)
        issued_at = int(now)
        claims: dict[str, Any] = {"iss": self.issuer, "aud": audience, "sub": subject}
        if credential is not None:
            names = _OIDC_CLAIMS.get(credential.channel)
            if names is not None:
                claims[names[0]] = credential.address
                claims[names[1]] = True
        claims |= {
            "iat": issued_at,
            "exp": issued_at + self.ttl_seconds,
            "jti": b64url(os.urandom(16)),
            "auth_time": issued_at,
            "amr": list(_AMR.get(method, ("otp",))),
            "otp_method": method,
        }
        if nonce is not None:
            claims["nonce"] = nonce
        key = self.keys.signing_key(now)
        signing_input = f"{_header_part(key.kid)}.{_json_part(claims)}"
        return f"{signing_input}.{b64url(key.sign(signing_input.encode('ascii')))}"

    def for_browser(self, credential: Credential, now: float, *, via_link: bool = False) -> str:
        """The result of a code verified in the browser flow, typed or via its link."""
        return self.issue(
            audience=self.browser_audience,
            subject=None,
            method=code_method(credential.channel, via_link=via_link),
            credential=credential,
            nonce=None,
            now=now,
        )

    def jwks(self, now: float) -> dict[str, Any]:
        """The public keys a verifier needs at `now`."""
        return self.keys.jwks(now)


@functools.lru_cache(maxsize=16)
def _header_part(kid: str) -> str:
    """The encoded JOSE header of a result signed with `kid` (a key signs for a period)."""
    return _json_part({"alg": "EdDSA", "kid": kid, "typ": RESULT_TYPE})


def _json_part(value: Mapping[str, Any]) -> str:
    # pydantic-core's encoder: compact UTF-8 JSON, as `json.dumps` with tight separators
    # gives, in a fifth of the time (which was a tenth of an approving request's work).
    return b64url(to_json(value))
