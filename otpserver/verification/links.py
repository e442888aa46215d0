"""Sign-in links (SPEC §18): a pending code sealed into a URL, and approval from another device.

A link token is the code of one pending entry, sealed under the KEK ring for a purpose of
its own (`otpserver/link/v1`), with what identifies that entry (credential, issue time, the
digest the carrier holds) and its expiry. It grants nothing by itself: it only lets the
carrier that already holds the entry (the browser's cookie) present the code without typing
it, through the same check as a typed code. A mail scanner that fetches or submits the link
lacks that carrier, so it can neither spend the code nor sign anyone in.

With approval from another device, a correct two-digit number (shown by the first tab,
derived from the entry's digest) files one approval marker holding the link token; the
first tab's next poll opens it and checks the code itself. Markers are named by an HMAC of
the entry's digest and live as long as the code; two wrong numbers end approval for it.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import Enum

import msgpack

from otpserver.crypto.mac import hmac_sha256
from otpserver.errors import InvalidCookie
from otpserver.otp.credentials import Credential
from otpserver.otp.payload import Entry
from otpserver.stores.base import MarkerStore
from otpserver.verification.sealing import PendingSealer

PURPOSE = b"otpserver/link/v1"
LINK_VERSION = 1
MAX_TOKEN_CHARS = 1024
"""Far above a real link token (about 250 characters); longer path segments are refused
before any decryption."""
WRONG_NUMBERS = 2
"""Wrong numbers that end approval for a code: a guesser wins at most 2 times in 100."""


@dataclass(frozen=True, slots=True)
class LinkGrant:
    """What a link token holds: one entry's code and what identifies that entry."""

    credential: Credential
    issued_at: int
    expires_at: int
    digest: bytes
    code: str

    def matches(self, entry: Entry) -> bool:
        """True when `entry` is the very entry this link was sent for (same code digest)."""
        return (
            entry.credential == self.credential
            and entry.issued_at == self.issued_at
            and hmac.compare_digest(entry.digest, self.digest)
        )


class Approval(Enum):
    """The outcome of a number typed on another device."""

    APPROVED = "approved"
    WRONG = "wrong"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class LinkTokens:
    """Seals and opens link tokens, and names what they need in the marker store.

    `secret` keys the match numbers and the marker names, so neither can be computed by
    anyone who only holds a cookie's or a link's ciphertext.
    """

    sealer: PendingSealer
    secret: bytes

    async def seal(self, entry: Entry, code: str, now: float) -> str:
        """The token for `entry`'s current `code`."""
        plaintext = msgpack.packb(
            [
                LINK_VERSION,
                entry.credential.channel,
                entry.credential.address,
                entry.issued_at,
                entry.expires_at,
                entry.digest,
                code,
            ],
            use_bin_type=True,
        )
        return await self.sealer.seal_bytes(plaintext, now, purpose=PURPOSE)

    async def open(self, token: str, now: float) -> LinkGrant:
        """The grant a live token holds; `InvalidCookie` however it is wrong or expired."""
        if not 0 < len(token) <= MAX_TOKEN_CHARS:
            raise InvalidCookie()
        plaintext = await self.sealer.open_bytes(token, now, purpose=PURPOSE)
        try:
            version, channel, address, issued_at, expires_at, digest, code = msgpack.unpackb(
                plaintext, raw=False
            )
        except (ValueError, TypeError, msgpack.UnpackException):
            raise InvalidCookie() from None
        if (
            version != LINK_VERSION
            or not isinstance(channel, str)
            or not isinstance(address, str)
            or not isinstance(issued_at, int)
            or not isinstance(expires_at, int)
            or not isinstance(digest, bytes)
            or not isinstance(code, str)
        ):
            raise InvalidCookie()
        if now >= expires_at:
            raise InvalidCookie()
        return LinkGrant(Credential(channel, address), issued_at, expires_at, digest, code)

    def match_number(self, digest: bytes) -> str:
        """The two digits the first tab shows and the other device must type."""
        value = int.from_bytes(hmac_sha256(self.secret, b"match\x00" + digest)[:8], "big")
        return f"{value % 100:02d}"

    def marker(self, kind: bytes, digest: bytes) -> bytes:
        """The store name of one marker about the entry with `digest`."""
        return hmac_sha256(self.secret, b"link\x00" + kind + b"\x00" + digest)


@dataclass(frozen=True, slots=True)
class LinkApprovals:
    """Approval markers: one per code at most, ended for good by two wrong numbers."""

    tokens: LinkTokens
    markers: MarkerStore

    async def approve(self, grant: LinkGrant, token: str, number: str, now: float) -> Approval:
        """Record the approval when `number` is the entry's; count it as wrong otherwise.

        Each wrong number takes one of `WRONG_NUMBERS` set-if-absent slots, so concurrent
        guesses still end approval after exactly two.
        """
        ttl = grant.expires_at - now
        if ttl <= 0:
            return Approval.ENDED
        if await self._ended(grant.digest):
            return Approval.ENDED
        expected = self.tokens.match_number(grant.digest)
        if hmac.compare_digest(number.encode("ascii", "replace"), expected.encode("ascii")):
            await self.markers.put_if_absent(
                self.tokens.marker(b"approved", grant.digest), token.encode("ascii"), ttl
            )
            return Approval.APPROVED
        for slot in range(1, WRONG_NUMBERS + 1):
            name = self.tokens.marker(b"wrong%d" % slot, grant.digest)
            if await self.markers.put_if_absent(name, b"1", ttl):
                return Approval.WRONG if slot < WRONG_NUMBERS else Approval.ENDED
        return Approval.ENDED

    async def approved(self, entry: Entry, now: float) -> LinkGrant | None:
        """The grant another device approved for `entry`, or None (none, or ended)."""
        found = await self.markers.get(self.tokens.marker(b"approved", entry.digest))
        if found is None or await self._ended(entry.digest):
            return None
        try:
            grant = await self.tokens.open(found.decode("ascii"), now)
        except (InvalidCookie, UnicodeDecodeError):
            return None
        return grant if grant.matches(entry) else None

    async def ended(self, entry: Entry) -> bool:
        """True when two wrong numbers ended approval for `entry`'s code."""
        return await self._ended(entry.digest)

    async def _ended(self, digest: bytes) -> bool:
        last = self.tokens.marker(b"wrong%d" % WRONG_NUMBERS, digest)
        return await self.markers.get(last) is not None
