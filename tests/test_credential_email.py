"""The email fast path in otpserver/otp/addresses.py: a strict subset of what the validator accepts.

`plain_email` lets everyday addresses skip `email_validator`; it is only sound if every
address it accepts is one the validator accepts with the same normalized form. These
properties generate addresses around every edge the fast path claims to understand (label
and local-part lengths, hyphens, dots, special-use and numeric top-level domains, Punycode,
capitals) and compare the two.
"""

from __future__ import annotations

import string

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import example, given, settings
from hypothesis import strategies as st

from otpserver.otp.addresses import normalize_email, plain_email

ATEXT = string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-"
LABEL_CHARS = string.ascii_letters + string.digits + "-"
EDGE_TLDS = ["com", "test", "local", "localhost", "arpa", "onion", "invalid", "c0m", "123", "x"]

PROPERTY = settings(max_examples=600, deadline=None, database=None)


def validator_normal_form(address: str) -> str | None:
    """What the slow path would keep: the validator's normalized form, lower-cased."""
    try:
        return validate_email(address, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


@st.composite
def address_like(draw: st.DrawFn) -> str:
    """Addresses near the fast path's edges: most are plausible, many are subtly not."""
    atoms = draw(st.lists(st.text(ATEXT, min_size=0, max_size=30), min_size=1, max_size=4))
    local = ".".join(atoms)
    labels = draw(st.lists(st.text(LABEL_CHARS, min_size=0, max_size=70), min_size=1, max_size=5))
    tld = draw(st.one_of(st.sampled_from(EDGE_TLDS), st.text(LABEL_CHARS, max_size=66)))
    if draw(st.booleans()):
        labels[0] = draw(st.sampled_from(["xn--", "ab--", "a--b", "-a", "a-"])) + labels[0]
    return f"{local}@{'.'.join([*labels, tld])}"


@PROPERTY
@given(st.one_of(address_like(), st.text(ATEXT + '@.-"[] \\', max_size=80)))
@example("ada@example.com")
@example("Ada.Lovelace+OTP@Example.CO.uk")
@example("a@b.test")
@example("a@xn--bcher-kva.example")
@example("a@ab--c.com")
@example("a@example.c0m")
@example("a@123.123")
@example("a..b@example.com")
@example(".a@example.com")
@example("a@-example.com")
@example("a@example-.com")
@example("a" * 65 + "@example.com")
@example("a@" + "b" * 64 + ".com")
@example("a" * 64 + "@" + ".".join(["b" * 60] * 3) + ".com")
def test_every_address_the_fast_path_accepts_the_validator_accepts_alike(address: str) -> None:
    """No address skips the validator unless the validator would keep it, unchanged."""
    if address.isascii() and plain_email(address.lower()):
        assert validator_normal_form(address) == address.lower(), address


@pytest.mark.parametrize(
    "address",
    [
        "ada@example.com",
        "Ada.Lovelace+otp@Example.co.uk",
        "grace_hopper-1906@mail.navy.example.org",
        "o'brien@example.ie",
        "x@a-b.example",
    ],
)
def test_everyday_addresses_take_the_fast_path(address: str) -> None:
    """The common shapes skip the validator, and come out as the validator would keep them."""
    assert plain_email(address.lower())
    assert normalize_email(address) == validator_normal_form(address)


@pytest.mark.parametrize(
    "address",
    [
        "ada@example.test",  # special-use: the validator refuses it
        "ada@xn--bcher-kva.example",  # Punycode: the validator decides
        "ada@bücher.example",  # internationalized
        "ada@example.c0m",  # a top-level domain with a digit
        "a" * 65 + "@example.com",  # local part over 64
        "ada@[127.0.0.1]",  # an IP literal
        '"ada"@example.com',  # a quoted local part
    ],
)
def test_unusual_addresses_go_to_the_validator(address: str) -> None:
    """Anything outside the everyday shape is left to the validator, whatever it decides."""
    assert not plain_email(address.lower())
    expected = validator_normal_form(address)
    if expected is None:
        # The validator's own explanation is passed on (pydantic shows it to the client).
        with pytest.raises(ValueError, match=r"\w"):
            normalize_email(address)
    else:
        assert normalize_email(address) == expected
