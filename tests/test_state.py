"""The cookie payload codec: round trips, compression, and strict refusal of anything else."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from otpserver.errors import InvalidCookie
from otpserver.otp import payload
from otpserver.otp.credentials import Credential


def entry(address: str = "ada@example.com", **changes: object) -> payload.Entry:
    values: dict[str, object] = {
        "credential": Credential("email", address),
        "digest": b"d" * 16,
        "issued_at": 1_800_000_000,
        "expires_at": 1_800_000_300,
        "attempts_left": 3,
        "resends_left": 3,
        "resend_at": 1_800_000_030,
    }
    values.update(changes)
    return payload.Entry(**values)  # type: ignore[arg-type]


def tokens(*entries: payload.Entry) -> payload.TokenList:
    return payload.TokenList(list_id=b"i" * 16, current=len(entries) - 1, entries=entries)


def test_round_trip_keeps_every_field() -> None:
    """Encoding then decoding gives back an equal token list, blocks and locales included."""
    original = tokens(entry(), entry("bob@example.com", blocked_until=1_800_000_010, locale="fr"))
    assert payload.decode(payload.encode(original)) == original


def test_long_credentials_are_compressed() -> None:
    """Repetitive content is deflated; the flag byte says so."""
    blob = payload.encode(tokens(entry("a" * 200 + "@example.com")))
    assert blob[0] == 1
    assert len(blob) < 200


def test_small_payloads_stay_raw_when_smaller() -> None:
    """A payload that deflate would not shrink is stored raw."""
    blob = payload.encode(tokens(entry("x@y.co", digest=bytes(range(16)))))
    assert blob[0] in (0, 1)
    assert payload.decode(blob).entries[0].credential.address == "x@y.co"


@pytest.mark.parametrize(
    "data",
    [
        [2, b"i" * 16, 0, []],
        [1, b"short", 0, [[]]],
        [1, b"i" * 16, 5, [["email", "a@b.c", b"d", 1, 1, 1, 1, 1, 0, None]]],
        [1, b"i" * 16, 0, [["email", "a@b.c", b"d", 1, 1, True, 1, 1, 0, None]]],
        [1, b"i" * 16, 0, [["email", "a@b.c", b"d", -1, 1, 1, 1, 1, 0, None]]],
        [1, b"i" * 16, 0, [["email", "", b"d", 1, 1, 1, 1, 1, 0, None]]],
        [1, b"i" * 16, 0, [["email", "a@b.c", "", 1, 1, 1, 1, 1, 0, None]]],
        [1, b"i" * 16, 0, []],
        {"v": 1},
    ],
)
def test_malformed_structures_are_invalid_cookies(data: object) -> None:
    """Wrong versions, types, ranges or shapes all raise the one opaque cookie error."""
    with pytest.raises(InvalidCookie):
        payload.decode(b"\x00" + msgpack.packb(data, use_bin_type=True))


def test_decompression_bombs_are_refused() -> None:
    """A deflate stream that inflates past the limit is refused, not expanded."""
    import zlib

    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = compressor.compress(b"\x00" * 1_000_000) + compressor.flush()
    with pytest.raises(InvalidCookie):
        payload.decode(b"\x01" + bomb)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(blob: bytes) -> None:
    """Any byte string either decodes to a valid token list or raises InvalidCookie."""
    try:
        decoded = payload.decode(blob)
    except InvalidCookie:
        return
    assert isinstance(decoded, payload.TokenList)
