"""Backup codes: one-time recovery codes, kept only as salted slow hashes and used bits.

A set is generated whole and shown once. What the host stores is the sealed set: the salt,
one scrypt hash per code and a bit per code that says it was used. Nothing here does I/O or
reads a clock; the single-use guarantee under concurrency and against a host database rolled
back comes from the spent markers the caller claims (`otpserver.factors.service`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace

import msgpack

from otpserver.encoding import b64url

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
"""Crockford's base32: no I, L, O or U, so nothing reads as another character or a word."""

CODE_CHARACTERS = 16
CODE_BYTES = 10
"""80 random bits, 16 characters of 5 bits each."""

MIN_COUNT, DEFAULT_COUNT, MAX_COUNT = 5, 10, 20

# scrypt with N=2^14, r=8, p=1 (16 MiB, the interactive-login setting of the scrypt paper
# and RFC 7914's examples) takes about 30-60 ms on one server core. One salt per set means a
# redemption hashes its input once, whatever the set's size, so a redemption stays well
# under 100 ms while every stored hash costs an attacker the same again. The codes carry 80
# random bits, so the work factor is a second line of defence, not the first.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024
HASH_BYTES = 16
SALT_BYTES = 16
_PAYLOAD_VERSION = 1

_NORMALISE = str.maketrans({"O": "0", "I": "1", "L": "1", " ": None, "-": None})


@dataclass(frozen=True, slots=True)
class CodeSet:
    """What a sealed set holds; `marker_key` names its spent markers (never leaves the blob)."""

    set_id: bytes
    marker_key: bytes
    salt: bytes
    hashes: tuple[bytes, ...]
    used: int
    created_at_ms: int

    @property
    def public_id(self) -> str:
        """The id the host may show and log (`setId`): random, not derived from any code."""
        return b64url(self.set_id)

    @property
    def remaining(self) -> int:
        """Codes not yet used."""
        return sum(1 for index in range(len(self.hashes)) if not self.is_used(index))

    def is_used(self, index: int) -> bool:
        """Whether the code at `index` was redeemed according to this copy of the set."""
        return bool(self.used >> index & 1)

    def with_used(self, index: int) -> CodeSet:
        """This set with the code at `index` marked used."""
        return replace(self, used=self.used | 1 << index)


def new_codes(count: int) -> list[str]:
    """`count` fresh codes from the OS CSPRNG, formatted for display (`XXXX-XXXX-XXXX-XXXX`)."""
    if not MIN_COUNT <= count <= MAX_COUNT:
        raise ValueError("backup code sets hold 5 to 20 codes")
    return [display(_encode(secrets.token_bytes(CODE_BYTES))) for _ in range(count)]


def display(code: str) -> str:
    """A normalised code in groups of four, as shown to the user."""
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


def normalise(text: str) -> str | None:
    """The 16 Crockford characters `text` spells, forgiving case, spaces, dashes and the
    letters people type for digits (O for 0, I and L for 1); None if it spells none."""
    if len(text) > 64 or not text.isascii():
        return None
    code = text.upper().translate(_NORMALISE)
    if len(code) != CODE_CHARACTERS or any(c not in CROCKFORD for c in code):
        return None
    return code


def hash_code(code: str, salt: bytes) -> bytes:
    """The slow salted hash of a normalised code (CPU-bound: run it off the event loop)."""
    return hashlib.scrypt(
        code.encode(),
        salt=salt,
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=_SCRYPT_MAXMEM,
        dklen=HASH_BYTES,
    )


def new_set(codes: list[str], now: float) -> CodeSet:
    """The set that stores `codes` (as displayed) hashed under a fresh salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    hashes = []
    for code in codes:
        normalised = normalise(code)
        if normalised is None:
            raise ValueError("not a backup code")
        hashes.append(hash_code(normalised, salt))
    return CodeSet(
        set_id=secrets.token_bytes(16),
        marker_key=secrets.token_bytes(32),
        salt=salt,
        hashes=tuple(hashes),
        used=0,
        created_at_ms=int(now * 1000),
    )


def find(code_set: CodeSet, digest: bytes) -> int | None:
    """The index of the code whose hash is `digest`, comparing with every hash in constant
    time so the timing says nothing about which code matched; None if none did."""
    found: int | None = None
    for index, stored in enumerate(code_set.hashes):
        if hmac.compare_digest(stored, digest) and found is None:
            found = index
    return found


def dump(code_set: CodeSet) -> bytes:
    """The set's wire form inside its sealed blob (versioned msgpack)."""
    packed: bytes = msgpack.packb(
        [
            _PAYLOAD_VERSION,
            code_set.set_id,
            code_set.marker_key,
            code_set.salt,
            list(code_set.hashes),
            code_set.used,
            code_set.created_at_ms,
        ]
    )
    return packed


def load(payload: bytes) -> CodeSet:
    """The set `dump` wrote; `ValueError` for anything else."""
    try:
        version, set_id, marker_key, salt, hashes, used, created_at_ms = msgpack.unpackb(payload)
    except (ValueError, TypeError, msgpack.UnpackException):
        raise ValueError("not a backup code set") from None
    if (
        version != _PAYLOAD_VERSION
        or not all(isinstance(b, bytes) for b in (set_id, marker_key, salt))
        or not isinstance(hashes, list)
        or not MIN_COUNT <= len(hashes) <= MAX_COUNT
        or not all(isinstance(h, bytes) and len(h) == HASH_BYTES for h in hashes)
        or not isinstance(used, int)
        or not isinstance(created_at_ms, int)
    ):
        raise ValueError("not a backup code set")
    return CodeSet(set_id, marker_key, salt, tuple(hashes), used, created_at_ms)


def _encode(raw: bytes) -> str:
    number = int.from_bytes(raw, "big")
    return "".join(
        CROCKFORD[number >> shift & 31] for shift in range(5 * (CODE_CHARACTERS - 1), -1, -5)
    )
