"""API keys: the `otpk_<id>_<secret>` format, making them, and finding one by its digest.

The configuration holds only the SHA-256 of each whole key. A key is 256 bits of CSPRNG
output, so a plain hash is enough (no salt or slow hash: nothing to guess), and a leaked
configuration gives no one a working key. Two entries may share an id while a client
rotates: both keys work until the old entry is removed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass

from otpserver.settings.api import KEY_ID, SCOPES, ApiKeyEntry

KEY_PREFIX = "otpk_"
SECRET_CHARS = 43
"""Base62 characters of a new key's secret: 43 * log2(62) ≈ 256 bits."""
_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_KEY = re.compile(r"otpk_([a-z0-9]{4,32})_([0-9A-Za-z]{32,128})")


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An authenticated caller: its key id (the `aud` of its results) and its scopes."""

    id: str
    scopes: frozenset[str]


def key_digest(key: str) -> bytes:
    """SHA-256 of the whole key text, as `OTP_API_KEYS` lists it."""
    return hashlib.sha256(key.encode("ascii")).digest()


def new_key(key_id: str, scopes: Iterable[str]) -> tuple[str, str]:
    """A fresh key and the `OTP_API_KEYS` entry that admits it (shown once, stored nowhere)."""
    names = sorted(set(scopes))
    if not KEY_ID.fullmatch(key_id):
        raise ValueError("the id must be 4-32 characters of a-z and 0-9")
    if not names or not set(names) <= SCOPES:
        raise ValueError(f"scopes must be from: {', '.join(sorted(SCOPES))}")
    secret = "".join(secrets.choice(_BASE62) for _ in range(SECRET_CHARS))
    key = f"{KEY_PREFIX}{key_id}_{secret}"
    return key, f"{key_id}:{key_digest(key).hex()}:{'+'.join(names)}"


class ApiKeyring:
    """The configured keys, looked up by the id a presented key names."""

    def __init__(self, entries: Iterable[ApiKeyEntry]) -> None:
        self._by_id: dict[str, list[ApiKeyEntry]] = {}
        for entry in entries:
            self._by_id.setdefault(entry.id, []).append(entry)

    def find(self, presented: str) -> ApiKey | None:
        """The caller `presented` authenticates, or None."""
        match = _KEY.fullmatch(presented)
        if match is None:
            return None
        digest = key_digest(presented)
        found: ApiKey | None = None
        # Every entry of the id is compared, in constant time, whichever matches: how long
        # this takes says nothing about how much of a guessed key was right.
        for entry in self._by_id.get(match.group(1), ()):
            if hmac.compare_digest(digest, entry.digest):
                found = ApiKey(entry.id, entry.scopes)
        return found
