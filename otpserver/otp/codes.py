"""One-time codes: uniform generation, strict parsing, and the keyed digest kept in cookies."""

from __future__ import annotations

import hmac
import os
from collections.abc import Sequence

from otpserver.crypto.mac import hmac_sha256
from otpserver.errors import OtpInvalidFormat

DIGEST_BYTES = 16
"""128-bit truncated HMAC-SHA256: far beyond any online guessing, and small in the cookie."""

ASCII_WHITESPACE = " \t\r\n\x0b\x0c"
"""What `parse_code` forgives around a code (and what openapi.json's pattern allows)."""


def random_code(length: int, alphabet: str) -> str:
    """A code of `length` characters drawn uniformly from `alphabet` by the OS CSPRNG.

    Rejection sampling (`random_below`), so no character is favoured even when the
    alphabet size is not a power of two. `secrets.choice` would do the same with a system
    call per character; this asks once per code (a fifth of the CPU time).
    """
    return "".join([alphabet[i] for i in random_below(len(alphabet), length)])


def random_below(bound: int, count: int) -> list[int]:
    """`count` integers drawn uniformly from `range(bound)` by the OS CSPRNG, `2 <= bound <= 256`.

    A byte at or above the largest multiple of `bound` that fits in a byte is thrown away,
    so every value keeps exactly the same number of byte values.
    """
    if not 2 <= bound <= 256:
        raise ValueError("bound must be between 2 and 256")
    usable = 256 - 256 % bound
    values: list[int] = []
    while len(values) < count:
        # A few spare bytes make a second draw rare even for the worst bound (129).
        for byte in os.urandom(count - len(values) + 4):
            if byte < usable:
                values.append(byte % bound)
                if len(values) == count:
                    break
    return values


def parse_code(raw: str, length: int, alphabet: str) -> str:
    """Return the submitted code, or raise `OtpInvalidFormat`.

    Only surrounding ASCII whitespace is forgiven. `str.isdigit` is deliberately not used:
    it accepts Unicode digits such as '٣', which must be refused, not normalised.
    """
    code = raw.strip(ASCII_WHITESPACE)
    if len(code) != length or not code.isascii() or any(c not in alphabet for c in code):
        raise OtpInvalidFormat()
    return code


def code_digest(key: bytes, credential: str, issued_at: int, code: str) -> bytes:
    """The keyed hash of a code that the cookie stores instead of the code.

    Keyed with a server secret, so even someone who could read a cookie's plaintext could
    not test the 10^6 candidate codes offline. The credential and issue time bind the
    digest to one entry, so a code never matches another credential's entry.
    """
    message = b"\x00".join(
        (credential.encode("utf-8"), str(issued_at).encode("ascii"), code.encode("ascii"))
    )
    return hmac_sha256(key, message)[:DIGEST_BYTES]


def digests_match(expected: bytes, actual: bytes) -> bool:
    """Constant-time comparison, so timing reveals nothing about a stored digest."""
    return hmac.compare_digest(expected, actual)


def digest_matches(
    stored: bytes, keys: Sequence[bytes], credential: str, issued_at: int, code: str
) -> bool:
    """True when `code` hashes to `stored` under any of `keys`: the digest key of the
    current master key first, then those of `OTP_MASTER_KEY_PREVIOUS`, so codes sent just
    before a master-key rotation still verify. Every key is tried, whichever matches."""
    found = False
    for key in keys:
        found |= digests_match(stored, code_digest(key, credential, issued_at, code))
    return found
