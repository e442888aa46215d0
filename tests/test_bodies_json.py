"""JSON bodies: an object that names one key twice is refused, never silently resolved."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from otpserver.errors import BodyInvalid
from otpserver.http.bodies import JSON, read_code, read_json_object
from otpserver.http.exchange import ApiRequest


def json_request(body: bytes) -> ApiRequest:
    return ApiRequest({"type": "http"}, {b"content-type": JSON}, body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"email": "ada@example.com", "email": "eve@example.com"}',
        b'{"email":"ada@example.com","locale":"en","email":"ada@example.com"}',
        b'{"a": {"x": 1, "x": 2}}',
        b'{"a": [{"x": 1}, {"y": ":", "y": 2}]}',
        b'{"\\u0065mail": "a@example.com", "email": "b@example.com"}',
    ],
)
def test_a_duplicate_key_is_refused(body: bytes) -> None:
    """A key repeated at any depth, in any spelling of the same string, is BODY:INVALID."""
    with pytest.raises(BodyInvalid):
        read_json_object(json_request(body))


def test_a_duplicate_otp_field_is_refused() -> None:
    """Verify's JSON body cannot name `otp` twice and have one of them win."""
    with pytest.raises(BodyInvalid):
        read_code(json_request(b'{"otp": "123456", "otp": "654321"}'))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet=':"\\{}[],ab \u00e9', max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(alphabet=':"ab\u00e9', max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(st.dictionaries(st.text(alphabet=':"ab\u00e9', max_size=4), JSON_VALUES, max_size=4))
def test_objects_without_duplicates_read_as_the_standard_parser_reads_them(
    data: dict[str, Any],
) -> None:
    """Any object with distinct keys (colons and quotes in its strings included) is accepted
    and read exactly as `json.loads` reads it."""
    body = json.dumps(data).encode()
    assert read_json_object(json_request(body)) == json.loads(body)


async def test_the_api_refuses_a_create_body_with_two_emails(client: httpx.AsyncClient) -> None:
    """A create naming `email` twice is refused before anything is sent."""
    response = await client.post(
        "/api/otp/create",
        content=b'{"email": "ada@example.com", "email": "eve@example.com"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "BODY:INVALID"
