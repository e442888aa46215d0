"""TOTP and HOTP through the project's own code: RFC known answers, the window, the URI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from otpserver.factors.totp import (
    ALGORITHMS,
    Algorithm,
    TotpParameters,
    hotp,
    matching_step,
    new_secret,
    otpauth_uri,
    parse_code,
    secret_text,
    step_at,
    totp,
)

VECTORS = Path(__file__).parent / "vectors"


def vectors(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


def test_hotp_matches_rfc_4226_appendix_d() -> None:
    """Counters 0-9 of the RFC 4226 test secret give the ten published codes."""
    data = vectors("hotp_rfc4226.json")
    secret = data["secret_ascii"].encode()
    codes = [hotp(secret, counter, digits=data["digits"]) for counter in range(10)]
    assert codes == data["codes"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_totp_matches_rfc_6238_appendix_b(algorithm: Algorithm) -> None:
    """Every time of RFC 6238 Appendix B gives the published 8-digit code for each hash."""
    data = vectors("totp_rfc6238.json")
    secret = data["secrets_ascii"][algorithm].encode()
    parameters = TotpParameters(
        digits=data["digits"], period=data["step_seconds"], algorithm=algorithm
    )
    for row in data["rows"]:
        assert totp(secret, row["time"], parameters) == row[algorithm], row["time"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(("digits", "period"), [(6, 30), (8, 30), (6, 60), (8, 60)])
def test_codes_agree_with_an_independent_library(
    algorithm: Algorithm, digits: int, period: int
) -> None:
    """pyotp computes the same code as ours for each algorithm, length and period."""
    secret = new_secret(algorithm)
    parameters = TotpParameters(digits=digits, period=period, algorithm=algorithm)
    other = pyotp.TOTP(
        secret_text(secret), digits=digits, interval=period, digest=algorithm.lower()
    )
    for now in (0, 59, 1_800_000_000, 1_800_000_029.9, 2_000_000_000):
        assert totp(secret, now, parameters) == other.at(int(now))


def test_secrets_are_at_least_160_bits_and_fresh() -> None:
    """Each algorithm's secret has at least 160 bits and no two secrets repeat."""
    for algorithm in ALGORITHMS:
        assert len(new_secret(algorithm)) * 8 >= 160
    assert len({new_secret("SHA1") for _ in range(1000)}) == 1000


def test_the_window_accepts_one_step_either_side_only() -> None:
    """With a window of 1, the previous, current and next steps match; two away do not."""
    secret = new_secret("SHA1")
    parameters = TotpParameters()
    now = 1_800_000_015.0
    current = step_at(now, 30)
    for offset in (-1, 0, 1):
        code = hotp(secret, current + offset)
        assert matching_step(secret, code, now, parameters, 1) == current + offset
    for offset in (-2, 2):
        assert matching_step(secret, hotp(secret, current + offset), now, parameters, 1) is None


def test_a_window_of_zero_accepts_only_the_current_step() -> None:
    """Window 0 takes the current step's code and refuses its neighbours'."""
    secret = new_secret("SHA1")
    parameters = TotpParameters()
    now = 1_800_000_015.0
    current = step_at(now, 30)
    assert matching_step(secret, hotp(secret, current), now, parameters, 0) == current
    assert matching_step(secret, hotp(secret, current - 1), now, parameters, 0) is None


def test_parse_code_takes_only_ascii_digits_of_the_length() -> None:
    """Spaces are ignored; other lengths, letters and Unicode digits are refused."""
    assert parse_code("123 456", 6) == "123456"
    assert parse_code(" 12345678 ", 8) == "12345678"
    for text in ("12345", "1234567", "12345a", "١٢٣٤٥٦", "123456\n", "12\x00456", ""):
        assert parse_code(text, 6) is None


@given(st.text(max_size=40))
def test_parse_code_never_fails_on_arbitrary_text(text: str) -> None:
    """Any text parses to None or to exactly six ASCII digits, without raising."""
    code = parse_code(text, 6)
    assert code is None or (len(code) == 6 and code.isascii() and code.isdigit())


def test_the_uri_carries_what_an_app_needs() -> None:
    """The otpauth URI names issuer and account and round-trips through pyotp's parser."""
    secret = new_secret("SHA256")
    parameters = TotpParameters(digits=8, period=60, algorithm="SHA256")
    uri = otpauth_uri(secret, parameters, account="ada@example.com", issuer="Example: Co")
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == "/Example: Co:ada@example.com"
    query = parse_qs(parts.query)
    assert query["issuer"] == ["Example: Co"]
    assert query["secret"] == [secret_text(secret)]
    parsed = pyotp.parse_uri(uri)
    assert isinstance(parsed, pyotp.TOTP)
    assert parsed.digits == 8
    assert parsed.interval == 60
    assert parsed.at(1_800_000_000) == totp(secret, 1_800_000_000, parameters)
