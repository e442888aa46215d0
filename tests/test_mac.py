"""otpserver.crypto.mac: the cached-pad HMAC is exactly RFC 2104 HMAC-SHA256."""

from __future__ import annotations

import hmac

from hypothesis import given, settings
from hypothesis import strategies as st

from otpserver.crypto.mac import hmac_sha256


def test_rfc_4231_case_2() -> None:
    """A known answer: RFC 4231 test case 2 (a key shorter than the block)."""
    digest = hmac_sha256(b"Jefe", b"what do ya want for nothing?")
    assert digest.hex() == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def test_rfc_4231_case_6() -> None:
    """A known answer: RFC 4231 test case 6 (a 131-byte key, hashed first)."""
    message = b"Test Using Larger Than Block-Size Key - Hash Key First"
    digest = hmac_sha256(b"\xaa" * 131, message)
    assert digest.hex() == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"


@settings(max_examples=300, deadline=None, database=None)
@given(key=st.binary(max_size=150), message=st.binary(max_size=300))
def test_matches_the_standard_library(key: bytes, message: bytes) -> None:
    """Any key length (empty, short, a block, longer) and message: the stdlib's answer."""
    assert hmac_sha256(key, message) == hmac.digest(key, message, "sha256")


def test_repeated_calls_do_not_share_state() -> None:
    """The cached pad states are copied, never updated: the same inputs give the same MAC."""
    first = hmac_sha256(b"k" * 32, b"one")
    hmac_sha256(b"k" * 32, b"two")
    assert hmac_sha256(b"k" * 32, b"one") == first
