"""Codes: uniform generation from the OS CSPRNG, strict parsing, keyed digests."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otpserver.errors import OtpInvalidFormat
from otpserver.otp.codes import code_digest, digests_match, parse_code, random_below, random_code

ROOT = Path(__file__).parent.parent


def test_digit_frequencies_pass_chi_square() -> None:
    """10^4 six-digit codes have uniform digit frequencies (chi-square, 9 dof, p > 0.001)."""
    counts = Counter("".join(random_code(6, "0123456789") for _ in range(10_000)))
    expected = 60_000 / 10
    chi_square = sum((counts[d] - expected) ** 2 / expected for d in "0123456789")
    # 27.88 is the 0.999 quantile of chi-square with 9 degrees of freedom.
    assert chi_square < 27.88


def test_odd_alphabets_are_uniform_too() -> None:
    """A 7-letter alphabet (not a power of two) shows no modulo bias."""
    counts = Counter("".join(random_code(10, "ABCDEFG") for _ in range(7_000)))
    expected = 70_000 / 7
    chi_square = sum((counts[c] - expected) ** 2 / expected for c in "ABCDEFG")
    # 22.46 is the 0.999 quantile of chi-square with 6 degrees of freedom.
    assert chi_square < 22.46


def test_the_random_module_is_never_imported() -> None:
    """No module of the server or the shipped hooks imports `random`."""
    offenders = []
    for path in [*ROOT.joinpath("otpserver").rglob("*.py"), *ROOT.joinpath("custom").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(name == "random" or name.startswith("random.") for name in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


@pytest.mark.parametrize("raw", ["123456", " 123456", "123456\n", "\t123456 "])
def test_surrounding_ascii_whitespace_is_forgiven(raw: str) -> None:
    """Copy-pasted codes with spaces or a newline around them parse."""
    assert parse_code(raw, 6, "0123456789") == "123456"


@pytest.mark.parametrize(
    "raw",
    [
        "12345",
        "1234567",
        "12 456",
        "12345a",
        "١٢٣٤٥٦",
        "12345\x00",
        "\uff11\uff12\uff13\uff14\uff15\uff16",
        "",
        "123\n456",
    ],
)
def test_wrong_formats_are_refused(raw: str) -> None:
    """Wrong lengths, inner spaces, letters, Unicode digits and NULs are format errors."""
    with pytest.raises(OtpInvalidFormat):
        parse_code(raw, 6, "0123456789")


@given(st.text(max_size=50))
def test_any_text_parses_or_is_a_format_error(raw: str) -> None:
    """Arbitrary text raises only the format error; accepted codes are ASCII digits."""
    try:
        code = parse_code(raw, 6, "0123456789")
    except OtpInvalidFormat:
        return
    assert len(code) == 6
    assert all(c in "0123456789" for c in code)


def test_digest_binds_credential_issue_time_and_key() -> None:
    """The digest changes with any input, so a code never matches another entry."""
    base = code_digest(b"k" * 32, "ada@example.com", 100, "123456")
    assert digests_match(base, code_digest(b"k" * 32, "ada@example.com", 100, "123456"))
    for other in (
        code_digest(b"j" * 32, "ada@example.com", 100, "123456"),
        code_digest(b"k" * 32, "bob@example.com", 100, "123456"),
        code_digest(b"k" * 32, "ada@example.com", 101, "123456"),
        code_digest(b"k" * 32, "ada@example.com", 100, "123457"),
    ):
        assert not digests_match(base, other)


@pytest.mark.parametrize("bound", [2, 7, 10, 129, 256])
def test_random_below_is_uniform(bound: int) -> None:
    """Chi-square over `bound` values, including 129, which rejects almost half the bytes."""
    draws = 400 * bound
    counts = Counter(random_below(bound, draws))
    assert set(counts) <= set(range(bound))
    expected = draws / bound
    chi_square = sum((counts[value] - expected) ** 2 / expected for value in range(bound))
    # Wilson-Hilferty approximation of the 0.9999 quantile for bound - 1 degrees of freedom.
    dof = bound - 1
    limit = dof * (1 - 2 / (9 * dof) + 3.719 * (2 / (9 * dof)) ** 0.5) ** 3
    assert chi_square < limit


@pytest.mark.parametrize("bound", [0, 1, 257])
def test_random_below_refuses_bounds_it_cannot_serve(bound: int) -> None:
    with pytest.raises(ValueError, match="bound"):
        random_below(bound, 1)
