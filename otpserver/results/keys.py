"""Result-signing keys: one Ed25519 key per period, derived so every instance signs alike.

The private key of period `p` is HKDF-SHA256 of a secret (`OTP_SIGNING_SEED`, else the
master key) with the period in the info, used as an RFC 8032 seed. Nothing is stored and
nothing is elected: every instance with the same secret derives the same key at the same
time. The JWKS publishes the previous, current and next periods' public keys, so a verifier
that refreshes at least every third of a period always holds a key before it signs and
after it stops. When the master key is rotated, keys derived from the previous ones stay
published, so results signed just before a restart still verify.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_SALT = b"otpserver result signing v1"
MAX_JWKS_CACHE_SECONDS = 3600
"""Verifiers refresh the key set at least this often, so a master-key rotation reaches them
within the hour even with long signing periods."""


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def derive_secret(secret: bytes, info: bytes) -> bytes:
    """32 bytes for one job, derived from the signing secret (HKDF-SHA256)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=info).derive(secret)


def public_jwk(key: Ed25519PrivateKey) -> dict[str, str]:
    """The RFC 8037 public JWK of `key`, with its RFC 7638 thumbprint as `kid`."""
    x = b64url(
        key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    # RFC 7638 §3.2: the required members only, sorted, no whitespace.
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
    kid = b64url(hashlib.sha256(canonical.encode()).digest())
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA"}


class SigningKeys:
    """Ed25519 keys by period, from the current secret (signs) and earlier ones (published)."""

    def __init__(self, secret: bytes, period_seconds: int, previous: Sequence[bytes] = ()) -> None:
        self._secrets = (secret, *(s for s in previous if s != secret))
        self.period_seconds = period_seconds
        self._cache: dict[tuple[int, int], tuple[str, Ed25519PrivateKey]] = {}

    def period(self, now: float) -> int:
        """The period whose key signs at `now`."""
        return int(now // self.period_seconds)

    def _key(self, which: int, period: int) -> tuple[str, Ed25519PrivateKey]:
        slot = (which, period)
        found = self._cache.get(slot)
        if found is None:
            if len(self._cache) > 64:
                self._cache.clear()
            seed = derive_secret(
                self._secrets[which], b"ed25519 period\x00" + struct.pack(">q", period)
            )
            key = Ed25519PrivateKey.from_private_bytes(seed)
            found = self._cache[slot] = (public_jwk(key)["kid"], key)
        return found

    def signing_key(self, now: float) -> tuple[str, Ed25519PrivateKey]:
        """The key id and private key that sign at `now`."""
        return self._key(0, self.period(now))

    def published(self, now: float) -> list[tuple[bool, int, str]]:
        """(from the current secret?, period, kid) of every key the JWKS lists at `now`."""
        current = self.period(now)
        return [
            (which == 0, period, self._key(which, period)[0])
            for which in range(len(self._secrets))
            for period in (current - 1, current, current + 1)
        ]

    def jwks(self, now: float) -> dict[str, Any]:
        """The JSON Web Key Set (RFC 7517) of the published keys."""
        current = self.period(now)
        return {
            "keys": [
                public_jwk(self._key(which, period)[1])
                for which in range(len(self._secrets))
                for period in (current - 1, current, current + 1)
            ]
        }

    def cache_seconds(self) -> int:
        """How long a verifier may cache the JWKS: at most a third of a period."""
        return max(1, min(self.period_seconds // 3, MAX_JWKS_CACHE_SECONDS))
