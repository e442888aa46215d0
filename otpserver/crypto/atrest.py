"""The at-rest ring: keys derived from the master key that seal blobs the host keeps for months.

TOTP enrolments, backup-code sets and trusted devices outlive any code, so they are never
sealed under the store's daily KEKs: a flushed or lost store would destroy them. Their keys
are derived instead, with HKDF-SHA256, from the master key, one per purpose and generation.
Every instance derives the same keys, nothing is stored, and a blob opens as long as the
master key that sealed it is still configured (current, or listed as previous).

Layout of a token (base64url without padding; integers big-endian):

    version (1) ‖ master fingerprint (4) ‖ generation (4) ‖ nonce (12) ‖ ciphertext ‖ tag (16)

The generation is the 30-day period the blob was sealed in. Deriving a fresh key per
generation bounds how many random 96-bit nonces one AES-GCM key ever sees, far below the
2^32 that NIST SP 800-38D allows, whatever the traffic. The fingerprint names the master key
so that opening goes straight to the right one and can report that an older key opened it.

The whole header, the purpose and `bound_to` (the subject, the API key id) are associated
data: a blob of one purpose never opens as another, nor for another subject or key, and no
header byte can be changed. Every failure is one opaque `InvalidBlob`.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from otpserver.encoding import b64url

ATREST_VERSION = 1
GENERATION_SECONDS = 30 * 86400
"""How long one derived key seals new blobs before the next generation's key takes over."""
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32
_HEADER = struct.Struct(">B4sI")
OVERHEAD_BYTES = _HEADER.size + NONCE_BYTES + TAG_BYTES
"""Bytes a token adds to its payload (before base64)."""
MAX_TOKEN_CHARS = 64 * 1024
"""Longer text is refused before decoding: no blob of ours comes near it."""
_SALT = b"otpserver at-rest ring v1"


class InvalidBlob(Exception):
    """A token that does not open: malformed, tampered, of another purpose or binding, or
    sealed under a master key that is no longer configured. Deliberately one opaque error."""


@dataclass(frozen=True, slots=True)
class Opened:
    """A payload that opened; `stale` when an older master key opened it, so the caller must
    hand the blob back re-sealed under the current one."""

    payload: bytes
    stale: bool


def master_key_fingerprint(master_key: bytes) -> bytes:
    """A public 8-byte name for a master key (HKDF output, so it reveals nothing of the key)."""
    return _hkdf(master_key, b"otpserver master-key fingerprint", 8)


def _hkdf(master_key: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=_SALT, info=info).derive(master_key)


def derive_key(master_key: bytes, purpose: str, generation: int) -> bytes:
    """The AES-256 key of `purpose` in `generation` (HKDF-SHA256, RFC 5869)."""
    info = b"otpserver at-rest key\x00" + purpose.encode() + b"\x00" + struct.pack(">I", generation)
    return _hkdf(master_key, info, KEY_BYTES)


def _associated_data(header: bytes, purpose: str, bound_to: bytes) -> bytes:
    # The purpose is length-prefixed so no (purpose, bound_to) pair can be re-split into
    # another with the same bytes.
    name = purpose.encode()
    return header + struct.pack(">H", len(name)) + name + bound_to


def _encode(blob: bytes) -> str:
    return b64url(blob)


def _decode(token: str) -> bytes:
    if not token.isascii() or len(token) > MAX_TOKEN_CHARS:
        raise InvalidBlob()
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise InvalidBlob() from None


class AtRestRing:
    """Seals under the current master key; opens under it or any previous one.

    `previous` lists retired master keys, newest first or in any order: each opens what it
    sealed, and such blobs open with `stale=True`.
    """

    def __init__(self, master_key: bytes, previous: Sequence[bytes] = ()) -> None:
        self._master_key = master_key
        self._fingerprint = master_key_fingerprint(master_key)[:4]
        # A previous key equal to the current one is the current one: never stale.
        self._previous = {
            master_key_fingerprint(key)[:4]: key for key in previous if key != master_key
        }
        self._keys: dict[tuple[bytes, str, int], bytes] = {}

    def _key(self, master_key: bytes, fingerprint: bytes, purpose: str, generation: int) -> bytes:
        slot = (fingerprint, purpose, generation)
        key = self._keys.get(slot)
        if key is None:
            if len(self._keys) >= 256:
                # Only a handful of (purpose, generation) pairs are ever live; a bound keeps
                # tokens naming arbitrary generations from growing the cache.
                self._keys.clear()
            key = self._keys[slot] = derive_key(master_key, purpose, generation)
        return key

    @staticmethod
    def generation(now: float) -> int:
        """The generation whose key seals at `now`."""
        return int(now // GENERATION_SECONDS)

    def seal(
        self,
        purpose: str,
        payload: bytes,
        *,
        bound_to: bytes,
        now: float,
        nonce: bytes | None = None,
    ) -> str:
        """Encrypt `payload` for `purpose` and `bound_to` as URL-safe text.

        `nonce` exists for known-answer tests only; production callers never pass it, so
        every seal draws a fresh random nonce.
        """
        generation = self.generation(now)
        header = _HEADER.pack(ATREST_VERSION, self._fingerprint, generation)
        nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
        key = self._key(self._master_key, self._fingerprint, purpose, generation)
        sealed = AESGCM(key).encrypt(nonce, payload, _associated_data(header, purpose, bound_to))
        return _encode(header + nonce + sealed)

    def open(self, purpose: str, token: str, *, bound_to: bytes) -> Opened:
        """Decrypt a token from `seal`, or raise `InvalidBlob` for any defect at all."""
        blob = _decode(token)
        if len(blob) < OVERHEAD_BYTES:
            raise InvalidBlob()
        version, fingerprint, generation = _HEADER.unpack_from(blob)
        if version != ATREST_VERSION:
            raise InvalidBlob()
        stale = fingerprint != self._fingerprint
        master_key = self._previous.get(fingerprint) if stale else self._master_key
        if master_key is None:
            raise InvalidBlob()
        key = self._key(master_key, fingerprint, purpose, generation)
        header = blob[: _HEADER.size]
        nonce = blob[_HEADER.size : _HEADER.size + NONCE_BYTES]
        try:
            payload = AESGCM(key).decrypt(
                nonce,
                blob[_HEADER.size + NONCE_BYTES :],
                _associated_data(header, purpose, bound_to),
            )
        except (InvalidTag, ValueError):
            raise InvalidBlob() from None
        return Opened(payload, stale)

    def fingerprints(self) -> tuple[str, tuple[str, ...]]:
        """Hex fingerprints of the current and previous master keys (never the keys)."""
        return (
            master_key_fingerprint(self._master_key).hex(),
            tuple(master_key_fingerprint(key).hex() for key in self._previous.values()),
        )
