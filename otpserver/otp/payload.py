"""The cookie payload: pending per-credential entries, as a versioned, compressed msgpack blob.

This module only converts between `TokenList` and bytes and checks the shape strictly;
what the fields mean over time is `otpserver.otp.flow`'s business. Every malformed payload
raises `InvalidCookie`, the one opaque cookie error.
"""

from __future__ import annotations

import threading
import zlib
from typing import Any, NamedTuple

import msgpack

from otpserver.errors import InvalidCookie
from otpserver.otp.credentials import Credential

PAYLOAD_VERSION = 1
LIST_ID_BYTES = 16
"""128-bit random IDs: unguessable, and collisions are out of reach."""

_RAW = 0
_DEFLATE = 1
_MAX_INFLATED_BYTES = 16 * 1024
"""Refuses decompression bombs: a legitimate payload is a few hundred bytes."""
_MAX_ENTRIES = 16
_MAX_TEXT = 512
_DEFLATE_FROM_BYTES = 96
"""Smaller payloads are stored raw without trying deflate: one pending code with a typical
address packs to about 80 bytes, mostly random ID and digest, which deflate cannot shrink,
and setting up a compressor costs more than the rest of the encoding."""


class Entry(NamedTuple):
    """One pending credential: the digest of its current code and its counters.

    Instants are whole Unix seconds. `resend_at` is when a resend becomes allowed;
    `blocked_until` ends a temporary verify block (0 = none).
    """

    credential: Credential
    digest: bytes
    issued_at: int
    expires_at: int
    attempts_left: int
    resends_left: int
    resend_at: int
    blocked_until: int = 0
    locale: str | None = None


class TokenList(NamedTuple):
    """Everything a cookie holds: its single-use ID, the entries and which one is current."""

    list_id: bytes
    current: int
    entries: tuple[Entry, ...]

    @property
    def current_entry(self) -> Entry:
        """The entry that resend and verify act on."""
        return self.entries[self.current]


_PACKERS = threading.local()


def _packer() -> msgpack.Packer:
    """This thread's reusable packer: `packb` builds a new one, buffer and all, per call."""
    packer: msgpack.Packer | None = getattr(_PACKERS, "packer", None)
    if packer is None:
        packer = _PACKERS.packer = msgpack.Packer(use_bin_type=True)
    return packer


def encode(tokens: TokenList) -> bytes:
    """Serialize and compress; the smaller of raw and deflated wins, flagged in byte 0
    (payloads under `_DEFLATE_FROM_BYTES` are not worth trying and stay raw)."""
    packed: bytes = _packer().pack(
        [
            PAYLOAD_VERSION,
            tokens.list_id,
            tokens.current,
            [
                [
                    e.credential.channel,
                    e.credential.address,
                    e.digest,
                    e.issued_at,
                    # Deltas from issue time are small ints, so msgpack stores them in 1-3 bytes.
                    e.expires_at - e.issued_at,
                    e.attempts_left,
                    e.resends_left,
                    e.resend_at - e.issued_at,
                    max(0, e.blocked_until - e.issued_at),
                    e.locale,
                ]
                for e in tokens.entries
            ],
        ],
    )
    if len(packed) < _DEFLATE_FROM_BYTES:
        return bytes([_RAW]) + packed
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = compressor.compress(packed) + compressor.flush()
    if len(deflated) < len(packed):
        return bytes([_DEFLATE]) + deflated
    return bytes([_RAW]) + packed


def decode(blob: bytes) -> TokenList:
    """Parse a payload produced by `encode`, or raise `InvalidCookie`."""
    try:
        return _decode(blob)
    except InvalidCookie:
        raise
    except (ValueError, TypeError, IndexError, zlib.error, msgpack.UnpackException):
        raise InvalidCookie() from None


def _decode(blob: bytes) -> TokenList:
    if not blob:
        raise InvalidCookie()
    flag, body = blob[0], blob[1:]
    if flag == _DEFLATE:
        inflater = zlib.decompressobj(-15)
        body = inflater.decompress(body, _MAX_INFLATED_BYTES)
        if inflater.unconsumed_tail or not inflater.eof:
            raise InvalidCookie()
    elif flag != _RAW:
        raise InvalidCookie()
    data = msgpack.unpackb(body, raw=False, strict_map_key=True, max_bin_len=1024, max_str_len=1024)
    if not isinstance(data, list) or len(data) != 4 or data[0] != PAYLOAD_VERSION:
        raise InvalidCookie()
    _, list_id, current, raw_entries = data
    if not isinstance(list_id, bytes) or len(list_id) != LIST_ID_BYTES:
        raise InvalidCookie()
    if not isinstance(raw_entries, list) or not 0 < len(raw_entries) <= _MAX_ENTRIES:
        raise InvalidCookie()
    entries = tuple([_entry(raw) for raw in raw_entries])
    if not _is_count(current) or not 0 <= current < len(entries):
        raise InvalidCookie()
    return TokenList(list_id=list_id, current=current, entries=entries)


def _entry(raw: Any) -> Entry:
    if type(raw) is not list or len(raw) != 10:
        raise InvalidCookie()
    channel, address, digest, issued_at, ttl, attempts, resends, resend_in, block_in, locale = raw
    # Plain checks rather than `all(...)` over generators: this runs on every verify.
    if not (
        _is_text(channel)
        and _is_text(address)
        and _is_count(issued_at)
        and _is_count(ttl)
        and _is_count(attempts)
        and _is_count(resends)
        and _is_count(resend_in)
        and _is_count(block_in)
        and (locale is None or (type(locale) is str and len(locale) <= 35))
        and type(digest) is bytes
        and digest
    ):
        raise InvalidCookie()
    return Entry(
        Credential(channel=channel, address=address),
        digest,
        issued_at,
        issued_at + ttl,
        attempts,
        resends,
        issued_at + resend_in,
        issued_at + block_in if block_in else 0,
        locale,
    )


def _is_text(value: Any) -> bool:
    return type(value) is str and 0 < len(value) <= _MAX_TEXT


def _is_count(value: Any) -> bool:
    # `type(...) is int`, not isinstance: True where a counter belongs is malformed.
    return type(value) is int and value >= 0
