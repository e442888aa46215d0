"""`otpserver.JSONResponse`: Starlette's response with pydantic-core's encoder."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from starlette.responses import JSONResponse as StarletteJSONResponse

from otpserver import JSONResponse

json_without_floats = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(json_without_floats)
def test_the_same_bytes_as_starlettes(content: Any) -> None:
    """What a final hook answers with (text, numbers, flags, lists, objects) comes out byte
    for byte as Starlette's JSONResponse writes it, headers included."""
    ours, theirs = JSONResponse(content), StarletteJSONResponse(content)
    assert ours.body == theirs.body
    assert ours.raw_headers == theirs.raw_headers


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_read_back_the_same(number: float) -> None:
    """Floats may be spelled differently (`1e-05` or `1e-5`), never read differently."""
    assert json.loads(bytes(JSONResponse({"n": number}).body)) == {"n": number}


def test_a_float_that_is_no_number_is_null() -> None:
    """Starlette refuses NaN and infinities; this writes null, which every reader accepts."""
    assert JSONResponse([math.nan, math.inf]).body == b"[null,null]"
