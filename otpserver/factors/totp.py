"""TOTP (RFC 6238) on HOTP (RFC 4226): codes, steps and the acceptance window, all pure.

Nothing here reads a clock or a store: the caller passes `now`, and the step a code matched
is handed back so the caller can record it atomically (one `MarkerStore.advance`), which is
what makes a code work at most once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlencode

Algorithm = Literal["SHA1", "SHA256", "SHA512"]
ALGORITHMS: tuple[Algorithm, ...] = ("SHA1", "SHA256", "SHA512")
DIGITS: tuple[int, ...] = (6, 8)
PERIODS: tuple[int, ...] = (30, 60)
MAX_WINDOW = 2

_HASHES = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}
_SECRET_BYTES = {"SHA1": 20, "SHA256": 32, "SHA512": 64}
"""A key as long as the hash's output (RFC 4226 §4 asks for at least 128 bits, 160
recommended; RFC 6238's own vectors use these lengths). Never under 160 bits."""


@dataclass(frozen=True, slots=True)
class TotpParameters:
    """What an authenticator app needs besides the secret to show the same codes."""

    digits: int = 6
    period: int = 30
    algorithm: Algorithm = "SHA1"

    def __post_init__(self) -> None:
        if self.digits not in DIGITS or self.period not in PERIODS:
            raise ValueError("unsupported TOTP digits or period")
        if self.algorithm not in ALGORITHMS:
            raise ValueError("unsupported TOTP algorithm")


def new_secret(algorithm: Algorithm) -> bytes:
    """A fresh random key for `algorithm` from the OS CSPRNG."""
    return secrets.token_bytes(_SECRET_BYTES[algorithm])


def hotp(secret: bytes, counter: int, *, digits: int = 6, algorithm: Algorithm = "SHA1") -> str:
    """The HOTP value of `counter` (RFC 4226 §5.3, dynamic truncation), `digits` long."""
    mac = hmac.new(secret, counter.to_bytes(8, "big"), _HASHES[algorithm]).digest()
    offset = mac[-1] & 0x0F
    value = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFF_FFFF
    return str(value % 10**digits).zfill(digits)


def step_at(now: float, period: int) -> int:
    """The time step containing `now` (RFC 6238 §4.2 with T0 = 0)."""
    return int(now // period)


def totp(secret: bytes, now: float, parameters: TotpParameters) -> str:
    """The code an authenticator shows at `now`."""
    return hotp(
        secret,
        step_at(now, parameters.period),
        digits=parameters.digits,
        algorithm=parameters.algorithm,
    )


def matching_step(
    secret: bytes, code: str, now: float, parameters: TotpParameters, window: int
) -> int | None:
    """The earliest step within `window` steps of now whose code is `code`, else None.

    Every step of the window is computed and compared in constant time, whichever
    matches, so the answer's timing says nothing about which step (if any) matched.
    """
    current = step_at(now, parameters.period)
    found: int | None = None
    for step in range(current - window, current + window + 1):
        expected = hotp(secret, step, digits=parameters.digits, algorithm=parameters.algorithm)
        if hmac.compare_digest(expected.encode(), code.encode()) and found is None:
            found = step
    return found


def parse_code(text: str, digits: int) -> str | None:
    """The code in `text` if it is exactly `digits` ASCII digits (spaces anywhere ignored,
    as apps show "123 456"), else None. Unicode digits and other characters are refused."""
    code = text.replace(" ", "")
    if len(code) != digits or not code.isascii() or not code.isdigit():
        return None
    return code


def secret_text(secret: bytes) -> str:
    """The secret as authenticator apps take it typed in: base32, no padding."""
    return base64.b32encode(secret).decode().rstrip("=")


def otpauth_uri(secret: bytes, parameters: TotpParameters, *, account: str, issuer: str) -> str:
    """The `otpauth://totp/...` URI that QR codes carry (the Key Uri Format apps share)."""
    label = f"{quote(issuer, safe='')}:{quote(account, safe='')}"
    query = urlencode(
        {
            "secret": secret_text(secret),
            "issuer": issuer,
            "algorithm": parameters.algorithm,
            "digits": parameters.digits,
            "period": parameters.period,
        },
        quote_via=quote,
    )
    return f"otpauth://totp/{label}?{query}"


def last_acceptable_at(step: int, parameters: TotpParameters, window: int) -> float:
    """The instant after which `step` falls out of every window: how long its replay guard
    must live for a code of that step to be refused by every later verification."""
    return float((step + window + 1) * parameters.period)
