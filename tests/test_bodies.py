"""Request bodies: the verify form's fast path reads exactly what `parse_qs` would."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otpserver.errors import BodyInvalid, OtpError, OtpInvalidFormat
from otpserver.http.bodies import FORM, MAX_FORM_FIELDS, read_code
from otpserver.http.exchange import ApiRequest


def form_request(body: bytes) -> ApiRequest:
    return ApiRequest({"type": "http"}, {b"content-type": FORM}, body)


def reference(body: bytes) -> str | type[OtpError]:
    """What the general parser makes of a form body: the one `otp` value, or the error."""
    try:
        fields = parse_qs(
            body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS
        )
    except (UnicodeDecodeError, ValueError):
        return BodyInvalid
    values = fields.get("otp", [])
    return values[0] if len(values) == 1 else OtpInvalidFormat


def outcome(body: bytes) -> str | type[OtpError]:
    try:
        return read_code(form_request(body))
    except OtpError as error:
        return type(error)


FORM_TEXT = st.text(alphabet="otp=&%+;0123456789abcdefABCDEF \t\n\u00e9", max_size=24)


@given(FORM_TEXT)
def test_any_form_body_reads_as_parse_qs_reads_it(text: str) -> None:
    body = text.encode()
    assert outcome(body) == reference(body)


@given(FORM_TEXT)
def test_form_bodies_starting_with_otp_read_as_parse_qs_reads_them(text: str) -> None:
    body = b"otp=" + text.encode()
    assert outcome(body) == reference(body)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"otp=123456", "123456"),
        (b"otp=12+34", "12 34"),
        (b"otp=%31%32", "12"),
        (b"otp=1&otp=2", OtpInvalidFormat),
        (b"otp=1&x=2", "1"),
        (b"otp=", ""),
        (b"otp=\xff", BodyInvalid),
    ],
)
def test_form_examples(body: bytes, expected: str | type[OtpError]) -> None:
    assert outcome(body) == expected == reference(body)
