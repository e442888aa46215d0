"""Envelope encryption of cookie payloads: AES-KW(KEK, DEK) ‖ AES-256-GCM(DEK, payload).

Layout of a sealed blob (all integers big-endian):

    version (1) ‖ key_id (4) ‖ AES-KW(KEK, DEK) (40) ‖ nonce (12) ‖ ciphertext ‖ tag (16)

The header (version ‖ key_id ‖ wrapped DEK) and the purpose are GCM associated data, so a
blob sealed for one purpose never opens as another and no header byte can be swapped.
Every failure raises `InvalidCookie`: callers cannot, and must not, tell the causes apart.
"""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from otpserver.errors import InvalidCookie

ENVELOPE_VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12
WRAPPED_KEY_BYTES = KEY_BYTES + 8
TAG_BYTES = 16
_HEADER = struct.Struct(">BI")
HEADER_BYTES = _HEADER.size + WRAPPED_KEY_BYTES
OVERHEAD_BYTES = HEADER_BYTES + NONCE_BYTES + TAG_BYTES
"""Bytes an envelope adds to its payload (before base64)."""


def wrap_key(kek: bytes, key: bytes) -> bytes:
    """RFC 3394 AES key wrap: the only way a key is ever stored or sent."""
    return aes_key_wrap(kek, key)


def unwrap_key(kek: bytes, wrapped: bytes) -> bytes | None:
    """Inverse of `wrap_key`; None when the integrity check fails (wrong KEK or tampering)."""
    try:
        return aes_key_unwrap(kek, wrapped)
    except (InvalidUnwrap, ValueError):
        return None


def gcm_encrypt(key: bytes, nonce: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """AES-GCM ciphertext followed by the 16-byte tag (NIST SP 800-38D)."""
    return AESGCM(key).encrypt(nonce, plaintext, associated_data)


def gcm_decrypt(key: bytes, nonce: bytes, sealed: bytes, associated_data: bytes) -> bytes | None:
    """Inverse of `gcm_encrypt`; None when the tag does not verify."""
    try:
        return AESGCM(key).decrypt(nonce, sealed, associated_data)
    except (InvalidTag, ValueError):
        return None


def seal(
    payload: bytes,
    *,
    purpose: bytes,
    key_id: int,
    kek: bytes,
    dek: bytes | None = None,
    nonce: bytes | None = None,
) -> bytes:
    """Encrypt `payload` under a fresh data key wrapped by `kek`.

    `dek` and `nonce` exist for known-answer tests only; production callers never pass
    them, so every blob gets its own random key and nonce and GCM's nonce-reuse failure
    mode cannot arise.
    """
    if dek is None or nonce is None:
        fresh = os.urandom(KEY_BYTES + NONCE_BYTES)  # one system call for both
        dek = fresh[:KEY_BYTES] if dek is None else dek
        nonce = fresh[KEY_BYTES:] if nonce is None else nonce
    header = _HEADER.pack(ENVELOPE_VERSION, key_id) + wrap_key(kek, dek)
    return header + nonce + gcm_encrypt(dek, nonce, payload, purpose + b"\x00" + header)


def peek_key_id(blob: bytes) -> int:
    """The key id a blob claims, read before any crypto so the right KEK can be fetched."""
    if len(blob) < OVERHEAD_BYTES:
        raise InvalidCookie()
    version, key_id = _HEADER.unpack_from(blob)
    if version != ENVELOPE_VERSION:
        raise InvalidCookie()
    return int(key_id)


def unseal(blob: bytes, *, purpose: bytes, kek: bytes) -> bytes:
    """Decrypt a blob from `seal`, or raise `InvalidCookie` for any defect at all."""
    peek_key_id(blob)
    header = blob[:HEADER_BYTES]
    nonce = blob[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]
    dek = unwrap_key(kek, header[_HEADER.size :])
    if dek is None:
        raise InvalidCookie()
    payload = gcm_decrypt(
        dek, nonce, blob[HEADER_BYTES + NONCE_BYTES :], purpose + b"\x00" + header
    )
    if payload is None:
        raise InvalidCookie()
    return payload
