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

import hashlib
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import nacl.bindings
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from otpserver.encoding import b64url

_SALT = b"otpserver result signing v1"
MAX_JWKS_CACHE_SECONDS = 3600
"""Verifiers refresh the key set at least this often, so a master-key rotation reaches them
within the hour even with long signing periods."""


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


@dataclass(frozen=True, slots=True)
class PeriodKey:
    """One period's Ed25519 key: its `kid`, the key for its public half, and a signer.

    Signing goes through libsodium, not `cryptography`'s OpenSSL: RFC 8032 signatures are
    deterministic, so both give the same bytes (tests/test_results.py checks it), and
    libsodium's takes little more than half the instructions, on the request that
    approves a code, where one signature was the largest single cost.
    """

    kid: str
    private_key: Ed25519PrivateKey
    sodium_secret: bytes
    """libsodium's form of the private key: the 32-byte seed, then the public key."""

    @classmethod
    def from_seed(cls, seed: bytes) -> PeriodKey:
        key = Ed25519PrivateKey.from_private_bytes(seed)
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return cls(public_jwk(key)["kid"], key, seed + public)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `message`."""
        # libsodium returns the signature followed by the message.
        return nacl.bindings.crypto_sign(message, self.sodium_secret)[:64]


class SigningKeys:
    """Ed25519 keys by period, from the current secret (signs) and earlier ones (published)."""

    def __init__(self, secret: bytes, period_seconds: int, previous: Sequence[bytes] = ()) -> None:
        self._secrets = (secret, *(s for s in previous if s != secret))
        self.period_seconds = period_seconds
        self._cache: dict[tuple[int, int], PeriodKey] = {}

    def period(self, now: float) -> int:
        """The period whose key signs at `now`."""
        return int(now // self.period_seconds)

    def _key(self, which: int, period: int) -> PeriodKey:
        slot = (which, period)
        found = self._cache.get(slot)
        if found is None:
            if len(self._cache) > 64:
                self._cache.clear()
            seed = derive_secret(
                self._secrets[which], b"ed25519 period\x00" + struct.pack(">q", period)
            )
            found = self._cache[slot] = PeriodKey.from_seed(seed)
        return found

    def signing_key(self, now: float) -> PeriodKey:
        """The key that signs at `now`."""
        return self._key(0, self.period(now))

    def published(self, now: float) -> list[tuple[bool, int, str]]:
        """(from the current secret?, period, kid) of every key the JWKS lists at `now`."""
        current = self.period(now)
        return [
            (which == 0, period, self._key(which, period).kid)
            for which in range(len(self._secrets))
            for period in (current - 1, current, current + 1)
        ]

    def jwks(self, now: float) -> dict[str, Any]:
        """The JSON Web Key Set (RFC 7517) of the published keys."""
        current = self.period(now)
        return {
            "keys": [
                public_jwk(self._key(which, period).private_key)
                for which in range(len(self._secrets))
                for period in (current - 1, current, current + 1)
            ]
        }

    def cache_seconds(self) -> int:
        """How long a verifier may cache the JWKS: at most a third of a period."""
        return max(1, min(self.period_seconds // 3, MAX_JWKS_CACHE_SECONDS))
