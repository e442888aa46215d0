"""Known answers for the envelope: RFC 3394, NIST GCM, and the pinned cookie format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otpserver.crypto import envelope
from otpserver.encoding import b64url
from otpserver.errors import InvalidCookie
from otpserver.http.cookies import PURPOSE
from otpserver.otp import payload
from otpserver.otp.credentials import Credential
from otpserver.verification.sealing import b64decode

VECTORS = Path(__file__).parent / "vectors"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text())
    return data


@pytest.mark.parametrize("case", load("aes_kw_rfc3394.json")["cases"], ids=lambda c: c["section"])
def test_key_wrap_matches_rfc3394(case: dict[str, str]) -> None:
    """Our wrapper reproduces every RFC 3394 §4 wrapped key and unwraps it again."""
    kek, key = bytes.fromhex(case["kek"]), bytes.fromhex(case["key"])
    wrapped = envelope.wrap_key(kek, key)
    assert wrapped.hex().upper() == case["wrapped"]
    assert envelope.unwrap_key(kek, wrapped) == key


def test_unwrap_refuses_a_tampered_wrapped_key() -> None:
    """A single flipped bit in a wrapped key fails the RFC 3394 integrity check."""
    case = load("aes_kw_rfc3394.json")["cases"][-1]
    wrapped = bytearray(bytes.fromhex(case["wrapped"]))
    wrapped[3] ^= 1
    assert envelope.unwrap_key(bytes.fromhex(case["kek"]), bytes(wrapped)) is None


@pytest.mark.parametrize("case", load("aes_gcm_nist.json")["cases"], ids=lambda c: str(c["case"]))
def test_gcm_matches_nist_known_answers(case: dict[str, str]) -> None:
    """Our AES-256-GCM wrapper gives the published ciphertext and tag, and decrypts them."""
    key, iv = bytes.fromhex(case["key"]), bytes.fromhex(case["iv"])
    aad, plaintext = bytes.fromhex(case["aad"]), bytes.fromhex(case["plaintext"])
    sealed = envelope.gcm_encrypt(key, iv, plaintext, aad)
    assert sealed.hex() == case["ciphertext"] + case["tag"]
    assert envelope.gcm_decrypt(key, iv, sealed, aad) == plaintext
    assert envelope.gcm_decrypt(key, iv, sealed, aad + b"x") is None


def test_seal_wraps_the_data_key_as_rfc3394_says() -> None:
    """With the RFC 3394 §4.6 keys as KEK and DEK, the envelope header holds the RFC's bytes."""
    case = load("aes_kw_rfc3394.json")["cases"][-1]
    kek, dek = bytes.fromhex(case["kek"]), bytes.fromhex(case["key"])
    blob = envelope.seal(b"x", purpose=PURPOSE, key_id=7, kek=kek, dek=dek, nonce=bytes(12))
    assert blob[5 : 5 + envelope.WRAPPED_KEY_BYTES].hex().upper() == case["wrapped"]


def test_cookie_format_is_pinned() -> None:
    """Fixed keys, nonce and payload produce exactly the recorded cookie, and it opens again."""
    vector = load("cookie_v1.json")
    tokens = vector["tokens"]
    entries = tuple(
        payload.Entry(
            credential=Credential(e["channel"], e["address"]),
            digest=bytes.fromhex(e["digest"]),
            issued_at=e["issued_at"],
            expires_at=e["expires_at"],
            attempts_left=e["attempts_left"],
            resends_left=e["resends_left"],
            resend_at=e["resend_at"],
            blocked_until=e["blocked_until"],
            locale=e["locale"],
        )
        for e in tokens["entries"]
    )
    expected = payload.TokenList(bytes.fromhex(tokens["list_id"]), tokens["current"], entries)
    packed = payload.encode(expected)
    assert packed.hex() == vector["payload"]
    kek = bytes.fromhex(vector["kek"])
    blob = envelope.seal(
        packed,
        purpose=vector["purpose"].encode(),
        key_id=vector["key_id"],
        kek=kek,
        dek=bytes.fromhex(vector["dek"]),
        nonce=bytes.fromhex(vector["nonce"]),
    )
    assert b64url(blob) == vector["cookie"]
    opened = envelope.unseal(b64decode(vector["cookie"]), purpose=PURPOSE, kek=kek)
    assert payload.decode(opened) == expected


def test_purpose_is_bound() -> None:
    """A blob sealed for one purpose never opens as another."""
    kek = bytes(32)
    blob = envelope.seal(b"payload", purpose=b"trusted-device", key_id=1, kek=kek)
    with pytest.raises(InvalidCookie):
        envelope.unseal(blob, purpose=PURPOSE, kek=kek)


@pytest.mark.parametrize("offset", [0, 1, 4, 5, 44, 45, 56, 57, -1])
def test_any_flipped_byte_is_refused(offset: int) -> None:
    """Flipping any byte (version, key id, wrapped key, nonce, ciphertext, tag) is refused."""
    kek = bytes(32)
    blob = bytearray(envelope.seal(b"payload", purpose=PURPOSE, key_id=1, kek=kek))
    blob[offset] ^= 0x01
    with pytest.raises(InvalidCookie):
        envelope.unseal(bytes(blob), purpose=PURPOSE, kek=kek)


def test_short_blobs_are_refused() -> None:
    """Anything shorter than the fixed overhead is refused before any crypto runs."""
    with pytest.raises(InvalidCookie):
        envelope.peek_key_id(bytes(envelope.OVERHEAD_BYTES - 1))


def test_fresh_data_key_and_nonce_per_cookie() -> None:
    """10^4 seals of the same payload never repeat a wrapped data key or a nonce."""
    kek = bytes(32)
    wrapped, nonces = set(), set()
    for _ in range(10_000):
        blob = envelope.seal(b"same", purpose=PURPOSE, key_id=1, kek=kek)
        wrapped.add(blob[5:45])
        nonces.add(blob[45:57])
    assert len(wrapped) == len(nonces) == 10_000


@given(
    blob=st.binary(min_size=1, max_size=96),
    position=st.integers(min_value=0),
    stray=st.sampled_from([".", "=", "+", "/", " ", "\t", "\n", "!", "é", "\x00"]),
)
def test_a_character_outside_the_alphabet_is_refused_anywhere(
    blob: bytes, position: int, stray: str
) -> None:
    """The base64 decoder skips characters outside its alphabet; a cookie text carrying one
    anywhere must still be refused, not read as the cookie without it."""
    text = b64url(blob)
    at = position % (len(text) + 1)
    with pytest.raises(InvalidCookie):
        b64decode(text[:at] + stray + text[at:])
    assert b64decode(text) == blob
