"""Sealing pending state for a carrier: the envelope of SPEC §5 around a `TokenList`.

A cookie and a challenge token hold the same sealed state and differ only in their
`purpose`, which the envelope authenticates as associated data: a value sealed for one
purpose (or, for challenge tokens, one API key) never opens as another. Text is unpadded
base64url with exactly one valid spelling.
"""

from __future__ import annotations

import base64
import binascii

from otpserver.crypto import envelope
from otpserver.crypto.keyring import KeyRing
from otpserver.encoding import b64url
from otpserver.errors import InvalidCookie
from otpserver.otp import payload
from otpserver.otp.payload import TokenList

MAX_VALUE_CHARS = 4096
"""What a browser keeps in one cookie; sealed state never needs more."""


def b64decode(text: str) -> bytes:
    """Strict inverse of `b64url`, the only encoding sealed values are written in: other
    alphabets, padding or spare bits are refused.

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
    if b64url(blob) != text:
        raise InvalidCookie()
    return blob


class PendingSealer:
    """Seals bytes or `TokenList`s under the KEK ring, and opens them again.

    Every failure of any kind (text, key, tag, payload) is the one `InvalidCookie`.
    """

    def __init__(self, keyring: KeyRing) -> None:
        self._keyring = keyring

    async def open_bytes(self, text: str, now: float, *, purpose: bytes) -> bytes:
        """The plaintext of a value sealed for `purpose`."""
        blob = b64decode(text)
        key_id = envelope.peek_key_id(blob)
        kek = await self._keyring.find(key_id, now)
        if kek is None:
            raise InvalidCookie()
        try:
            return envelope.unseal(blob, purpose=purpose, kek=kek)
        except InvalidCookie:
            # Perhaps sealed under a key the store made again after losing this one.
            fresh = await self._keyring.find_again(key_id, kek, now)
            if fresh is None:
                raise
            return envelope.unseal(blob, purpose=purpose, kek=fresh)

    async def seal_bytes(self, plaintext: bytes, now: float, *, purpose: bytes) -> str:
        """`plaintext` sealed for `purpose` under the current KEK, with a fresh data key
        and nonce."""
        key_id, kek = await self._keyring.current(now)
        return b64url(envelope.seal(plaintext, purpose=purpose, key_id=key_id, kek=kek))

    async def open(self, text: str, now: float, *, purpose: bytes) -> TokenList:
        """The pending state a value sealed for `purpose` holds."""
        return payload.decode(await self.open_bytes(text, now, purpose=purpose))

    async def seal(self, tokens: TokenList, now: float, *, purpose: bytes) -> str:
        """`tokens` sealed for `purpose`."""
        return await self.seal_bytes(payload.encode(tokens), now, purpose=purpose)
