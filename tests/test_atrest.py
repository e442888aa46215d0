"""The at-rest ring: pinned format, independent key derivation, tampering, binding, rotation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from otpserver.crypto.atrest import (
    GENERATION_SECONDS,
    AtRestRing,
    InvalidBlob,
    Opened,
    derive_key,
)

VECTOR = Path(__file__).parent / "vectors" / "atrest_v1.json"
CURRENT = bytes(range(32))
OLD = bytes(range(100, 132))
NOW = 1_800_000_000.0


def vector() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTOR.read_text())
    return data


def rfc5869_hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """HKDF written out from RFC 5869 §2.2-2.3 with the standard library only."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    return okm[:length]


def b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_token_format_is_pinned() -> None:
    """Fixed master key, purpose, binding, time and nonce seal exactly the recorded token."""
    case = vector()
    ring = AtRestRing(bytes.fromhex(case["master_key"]))
    token = ring.seal(
        case["purpose"],
        bytes.fromhex(case["payload"]),
        bound_to=case["bound_to"].encode(),
        now=case["now"],
        nonce=bytes.fromhex(case["nonce"]),
    )
    assert token == case["token"]
    opened = ring.open(case["purpose"], token, bound_to=case["bound_to"].encode())
    assert opened == Opened(bytes.fromhex(case["payload"]), stale=False)


def test_derived_key_is_rfc5869_hkdf_of_the_master_key() -> None:
    """The per-purpose, per-generation key is plain RFC 5869 HKDF-SHA256 with the documented
    salt and info, so another implementation can reproduce it."""
    info = b"otpserver at-rest key\x00totp\x00" + struct.pack(">I", 694)
    expected = rfc5869_hkdf_sha256(CURRENT, b"otpserver at-rest ring v1", info, 32)
    assert derive_key(CURRENT, "totp", 694) == expected


def test_token_decrypts_with_the_documented_layout() -> None:
    """The pinned token opens with AES-GCM under the independently derived key, header,
    length-prefixed purpose and binding as associated data."""
    case = vector()
    blob = b64decode(case["token"])
    version, generation = blob[0], struct.unpack(">I", blob[5:9])[0]
    assert version == 1
    assert generation == int(case["now"] // GENERATION_SECONDS)
    info = b"otpserver at-rest key\x00" + case["purpose"].encode() + b"\x00" + blob[5:9]
    key = rfc5869_hkdf_sha256(
        bytes.fromhex(case["master_key"]), b"otpserver at-rest ring v1", info, 32
    )
    purpose = case["purpose"].encode()
    aad = blob[:9] + struct.pack(">H", len(purpose)) + purpose + case["bound_to"].encode()
    assert AESGCM(key).decrypt(blob[9:21], blob[21:], aad) == bytes.fromhex(case["payload"])


def test_every_seal_uses_a_fresh_nonce() -> None:
    """Sealing the same payload twice gives two different tokens that both open."""
    ring = AtRestRing(CURRENT)
    first = ring.seal("totp", b"secret", bound_to=b"alice", now=NOW)
    second = ring.seal("totp", b"secret", bound_to=b"alice", now=NOW)
    assert first != second
    assert ring.open("totp", first, bound_to=b"alice").payload == b"secret"
    assert ring.open("totp", second, bound_to=b"alice").payload == b"secret"


def test_generations_get_different_keys_and_old_generations_still_open() -> None:
    """A blob sealed a year ago is under another derived key and still opens today."""
    ring = AtRestRing(CURRENT)
    old = ring.seal("device", b"x", bound_to=b"alice", now=NOW - 365 * 86400)
    assert derive_key(CURRENT, "device", ring.generation(NOW)) != derive_key(
        CURRENT, "device", ring.generation(NOW - 365 * 86400)
    )
    assert ring.open("device", old, bound_to=b"alice") == Opened(b"x", stale=False)


def test_blob_is_bound_to_its_purpose_and_subject() -> None:
    """A blob opens neither as another purpose nor for another subject."""
    ring = AtRestRing(CURRENT)
    token = ring.seal("totp", b"secret", bound_to=b"alice", now=NOW)
    with pytest.raises(InvalidBlob):
        ring.open("backup_codes", token, bound_to=b"alice")
    with pytest.raises(InvalidBlob):
        ring.open("totp", token, bound_to=b"bob")


def test_purpose_and_binding_cannot_be_re_split() -> None:
    """Moving bytes between the purpose and the binding changes the associated data."""
    ring = AtRestRing(CURRENT)
    token = ring.seal("ab", b"p", bound_to=b"c", now=NOW)
    with pytest.raises(InvalidBlob):
        ring.open("a", token, bound_to=b"bc")


@given(position=st.integers(min_value=0, max_value=60), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_is_refused(position: int, bit: int) -> None:
    """Flipping any single bit of a token's bytes makes it one opaque InvalidBlob."""
    ring = AtRestRing(CURRENT)
    blob = bytearray(b64decode(ring.seal("totp", b"0123456789", bound_to=b"a", now=NOW)))
    blob[position % len(blob)] ^= 1 << bit
    token = base64.urlsafe_b64encode(bytes(blob)).rstrip(b"=").decode()
    with pytest.raises(InvalidBlob):
        ring.open("totp", token, bound_to=b"a")


@pytest.mark.parametrize(
    "token",
    ["", "a", "!!!!", "é" * 40, "A" * 40, "x" * 70_000, "AQ" + "A" * 60],
    ids=["empty", "short", "not-base64", "non-ascii", "zero-header", "huge", "unknown-key"],
)
def test_malformed_tokens_are_one_opaque_error(token: str) -> None:
    """Garbage of every shape raises InvalidBlob and nothing else."""
    with pytest.raises(InvalidBlob):
        AtRestRing(CURRENT).open("totp", token, bound_to=b"a")


def test_previous_master_key_opens_old_blobs_as_stale() -> None:
    """After a rotation with the old key as previous, old blobs open with stale=True and
    new blobs are sealed under the new key."""
    before = AtRestRing(OLD)
    token = before.seal("totp", b"secret", bound_to=b"alice", now=NOW)
    after = AtRestRing(CURRENT, previous=[OLD])
    assert after.open("totp", token, bound_to=b"alice") == Opened(b"secret", stale=True)
    resealed = after.seal("totp", b"secret", bound_to=b"alice", now=NOW)
    assert after.open("totp", resealed, bound_to=b"alice") == Opened(b"secret", stale=False)
    with pytest.raises(InvalidBlob):
        before.open("totp", resealed, bound_to=b"alice")


def test_without_the_previous_key_old_blobs_are_invalid() -> None:
    """A rotation that drops the old key makes its blobs invalid, never anything worse."""
    token = AtRestRing(OLD).seal("totp", b"secret", bound_to=b"alice", now=NOW)
    with pytest.raises(InvalidBlob):
        AtRestRing(CURRENT).open("totp", token, bound_to=b"alice")


def test_current_key_listed_as_previous_is_not_stale() -> None:
    """Listing the current key among the previous ones (a half-done rotation) changes nothing."""
    ring = AtRestRing(CURRENT, previous=[CURRENT, OLD])
    token = ring.seal("totp", b"s", bound_to=b"a", now=NOW)
    assert ring.open("totp", token, bound_to=b"a").stale is False


def test_fingerprints_name_keys_without_revealing_them() -> None:
    """The ring reports distinct public fingerprints that contain no key bytes."""
    current, previous = AtRestRing(CURRENT, previous=[OLD]).fingerprints()
    assert len(current) == 16
    assert previous != (current,)
    assert len(previous) == 1
    assert CURRENT.hex()[:8] not in current + previous[0]
