"""Bytes as text: unpadded base64url (RFC 4648 §5, no `=`), the one form every value the
server hands out is written in (cookies, tokens, blobs, ids, results, audit pseudonyms).

A module of its own, importing nothing of the server, on the lowest layer with `errors`:
the audit trail (observability) writes ids in it as well as the crypto above it."""

from __future__ import annotations

import binascii

_URLSAFE = bytes.maketrans(b"+/", b"-_")


def b64url(data: bytes) -> str:
    """Unpadded base64url of `data`."""
    # binascii directly: `base64.urlsafe_b64encode` is two Python calls around the same two
    # C steps, and a request encodes several values (a cookie's seal and its canonical check,
    # a result's four parts, an audit event's ids).
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode()
