"""The one cookie that carries a browser's pending codes: reading, sealing and attributes.

Production uses `__Host-otp` (Secure, HttpOnly, SameSite=Strict, Path=/, no Domain), which
browsers only accept from https and which no sibling subdomain can set. Development drops
the prefix and `Secure` so the flow works on http://localhost.
"""

from __future__ import annotations

from collections.abc import Iterable

from otpserver.crypto.keyring import KeyRing
from otpserver.errors import InvalidCookie
from otpserver.otp.payload import TokenList
from otpserver.verification.sealing import PendingSealer

PURPOSE = b"otpserver/pending-list/v1"
"""Bound into every envelope as associated data: no other cookie kind opens as this one."""

PRODUCTION_NAME = "__Host-otp"
DEVELOPMENT_NAME = "otp"


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


class CookieCodec:
    """Seals `TokenList`s into cookie values and opens them again."""

    def __init__(self, keyring: KeyRing, *, secure: bool) -> None:
        self._sealer = PendingSealer(keyring)
        self.secure = secure
        self.name = PRODUCTION_NAME if secure else DEVELOPMENT_NAME
        self._attributes = "; Path=/; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")

    async def open(self, value: str, now: float) -> TokenList:
        """Decrypt and parse a cookie value, or raise `InvalidCookie` whatever is wrong."""
        return await self._sealer.open(value, now, purpose=PURPOSE)

    async def seal(self, tokens: TokenList, now: float) -> str:
        """Encrypt `tokens` under the current KEK with a fresh data key and nonce."""
        return await self._sealer.seal(tokens, now, purpose=PURPOSE)

    def set_header(self, value: str, max_age_seconds: int) -> str:
        """A `Set-Cookie` value that keeps the cookie no longer than its last code lives."""
        return f"{self.name}={value}; Max-Age={max_age_seconds}{self._attributes}"

    def clear_header(self) -> str:
        """A `Set-Cookie` value that makes the browser drop the cookie at once."""
        return f"{self.name}=; Max-Age=0{self._attributes}"
