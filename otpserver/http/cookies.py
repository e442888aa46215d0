"""The one cookie that carries a browser's pending codes: reading, sealing and attributes.

Production uses `__Host-otp` (Secure, HttpOnly, SameSite=Strict, Path=/, no Domain), which
browsers only accept from https and which no sibling subdomain can set. Development drops
the prefix and `Secure` so the flow works on http://localhost.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable

from otpserver.crypto import envelope
from otpserver.crypto.keyring import KeyRing
from otpserver.errors import InvalidCookie
from otpserver.otp import payload
from otpserver.otp.payload import TokenList

PURPOSE = b"otpserver/pending-list/v1"
"""Bound into every envelope as associated data: no other cookie kind opens as this one."""

PRODUCTION_NAME = "__Host-otp"
DEVELOPMENT_NAME = "otp"
MAX_VALUE_CHARS = 4096


def read_cookie(headers: Iterable[tuple[bytes, bytes]], name: str) -> str | None:
    """The value of cookie `name`, None when absent; refused when present twice.

    Two cookies of one name mean someone else planted one (cookie tossing from a sibling
    domain, or a stale path); guessing which is ours would be unsafe.
    """
    wanted = name.encode("latin-1")
    found: bytes | None = None
    count = 0
    for header, raw in headers:
        if header != b"cookie":
            continue
        for pair in raw.split(b";"):
            key, sep, value = pair.strip().partition(b"=")
            if sep and key.strip() == wanted:
                count += 1
                found = value.strip()
    if count > 1:
        raise InvalidCookie()
    return None if found is None else found.decode("latin-1")


def b64encode(blob: bytes) -> str:
    """Unpadded base64url, the only encoding cookies are written in."""
    return base64.urlsafe_b64encode(blob).rstrip(b"=").decode("ascii")


def b64decode(text: str) -> bytes:
    """Strict inverse of `b64encode`: other alphabets, padding or spare bits are refused.

    Refusing non-canonical spellings means a cookie has exactly one valid form, so no
    mutation of a cookie's text can still be accepted. The decoder skips characters outside
    its alphabet; the re-encoding comparison below is what refuses them (an encoding holds
    none), along with padding and spare bits, so no separate character check is needed.
    """
    if not 0 < len(text) <= MAX_VALUE_CHARS:
        raise InvalidCookie()
    try:
        blob = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidCookie() from None
    if b64encode(blob) != text:
        raise InvalidCookie()
    return blob


class CookieCodec:
    """Seals `TokenList`s into cookie values and opens them again."""

    def __init__(self, keyring: KeyRing, *, secure: bool) -> None:
        self._keyring = keyring
        self.secure = secure
        self.name = PRODUCTION_NAME if secure else DEVELOPMENT_NAME
        self._attributes = "; Path=/; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")

    async def open(self, value: str, now: float) -> TokenList:
        """Decrypt and parse a cookie value, or raise `InvalidCookie` whatever is wrong."""
        blob = b64decode(value)
        kek = await self._keyring.find(envelope.peek_key_id(blob), now)
        if kek is None:
            raise InvalidCookie()
        return payload.decode(envelope.unseal(blob, purpose=PURPOSE, kek=kek))

    async def seal(self, tokens: TokenList, now: float) -> str:
        """Encrypt `tokens` under the current KEK with a fresh data key and nonce."""
        key_id, kek = await self._keyring.current(now)
        blob = envelope.seal(payload.encode(tokens), purpose=PURPOSE, key_id=key_id, kek=kek)
        return b64encode(blob)

    def set_header(self, value: str, max_age_seconds: int) -> str:
        """A `Set-Cookie` value that keeps the cookie no longer than its last code lives."""
        return f"{self.name}={value}; Max-Age={max_age_seconds}{self._attributes}"

    def clear_header(self) -> str:
        """A `Set-Cookie` value that makes the browser drop the cookie at once."""
        return f"{self.name}=; Max-Age=0{self._attributes}"
