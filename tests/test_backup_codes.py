"""Backup code sets: format, normalisation, slow salted hashes and the sealed payload."""

from __future__ import annotations

import contextlib
import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otpserver.factors.backup_codes import (
    CROCKFORD,
    SCRYPT_N,
    dump,
    find,
    hash_code,
    load,
    new_codes,
    new_set,
    normalise,
)

NOW = 1_800_000_000.0
DISPLAY = re.compile(r"[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}")


def test_codes_are_16_crockford_characters_in_groups_of_four() -> None:
    """Every code shows as four groups of four Crockford base32 characters."""
    for code in new_codes(20):
        assert DISPLAY.fullmatch(code), code


def test_set_sizes_are_bounded() -> None:
    """A set holds 5 to 20 codes."""
    assert len(new_codes(5)) == 5
    for count in (4, 21):
        with pytest.raises(ValueError, match="5 to 20"):
            new_codes(count)


def test_codes_carry_80_uniform_bits() -> None:
    """Over many codes every character position uses the whole alphabet, roughly evenly."""
    samples = [c for _ in range(100) for c in (normalise(x) for x in new_codes(20)) if c]
    counts = dict.fromkeys(CROCKFORD, 0)
    for code in samples:
        for symbol in code:
            counts[symbol] += 1
    expected = len(samples) * 16 / 32
    # 2000 codes: 1000 symbols expected per character; 6 standard deviations is ~190.
    assert all(abs(n - expected) < 200 for n in counts.values()), counts
    assert len(set(samples)) == len(samples)


def test_normalisation_forgives_how_people_type() -> None:
    """Case, spaces, dashes, O for 0 and I or L for 1 all read as the code shown."""
    assert normalise("abcd-efgh-jkmn-pqrs") == "ABCDEFGHJKMNPQRS"
    assert normalise(" ABCD EFGH JKMN PQRS ") == "ABCDEFGHJKMNPQRS"
    assert normalise("o0il-1111-2222-3333") == "0011111122223333"
    assert normalise("ABCDEFGHJKMNPQRS") == "ABCDEFGHJKMNPQRS"


def test_normalisation_refuses_what_is_no_code() -> None:
    """Wrong lengths, U, punctuation and non-ASCII characters are no code."""
    for text in (
        "ABCD-EFGH-JKMN-PQR",
        "ABCD-EFGH-JKMN-PQRS\u0422",
        "UBCD-EFGH-JKMN-PQRS",
        "ABCD_EFGH_JKMN_PQRS",
        "\uff21BCD-EFGH-JKMN-PQRS",
        "",
        "-" * 100,
    ):
        assert normalise(text) is None, text


@given(st.text(max_size=80))
def test_normalisation_never_fails_on_arbitrary_text(text: str) -> None:
    """Any text normalises to None or to 16 Crockford characters, without raising."""
    code = normalise(text)
    assert code is None or (len(code) == 16 and all(c in CROCKFORD for c in code))


def test_a_set_finds_each_of_its_codes_and_nothing_else() -> None:
    """The hash of each shown code finds its own index; another code finds none."""
    codes = new_codes(5)
    code_set = new_set(codes, NOW)
    for index, code in enumerate(codes):
        normalised = normalise(code)
        assert normalised is not None
        assert find(code_set, hash_code(normalised, code_set.salt)) == index
    other = normalise(new_codes(5)[0])
    assert other is not None
    assert find(code_set, hash_code(other, code_set.salt)) is None


def test_the_set_holds_no_code_in_clear() -> None:
    """Neither the shown nor the normalised form of any code appears in the dumped set."""
    codes = new_codes(10)
    payload = dump(new_set(codes, NOW))
    for code in codes:
        assert code.encode() not in payload
        assert (normalise(code) or "").encode() not in payload


def test_hashes_are_salted_per_set() -> None:
    """One code hashes differently under two sets' salts."""
    code = new_codes(5)[0]
    first, second = new_set([code] * 5, NOW), new_set([code] * 5, NOW)
    assert first.salt != second.salt
    assert first.hashes[0] != second.hashes[0]


def test_hashing_is_slow_but_well_under_100_ms() -> None:
    """scrypt uses N of at least 2^14, and one hash (one redemption's work) costs under 100 ms
    of CPU (CPU time, so other processes on the machine do not count)."""
    assert SCRYPT_N >= 2**14
    started = time.process_time()
    hash_code("ABCDEFGHJKMNPQRS", b"0" * 16)
    assert time.process_time() - started < 0.1


def test_used_bits_and_remaining() -> None:
    """Marking a code used lowers `remaining` and survives a dump and load."""
    code_set = new_set(new_codes(5), NOW).with_used(2)
    assert code_set.is_used(2)
    assert not code_set.is_used(1)
    assert code_set.remaining == 4
    assert load(dump(code_set)) == code_set


@given(st.binary(max_size=200))
def test_load_refuses_anything_but_a_set(data: bytes) -> None:
    """Arbitrary bytes either load as a set or raise ValueError, never anything else."""
    with contextlib.suppress(ValueError):
        load(data)
