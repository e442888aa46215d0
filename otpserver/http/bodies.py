"""Request bodies: content-type rules and strict parsing into plain Python values."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs

from pydantic_core import from_json

from otpserver.errors import BodyInvalid, OtpInvalidFormat, UnsupportedMediaType
from otpserver.http.exchange import ApiRequest

JSON = b"application/json"
FORM = b"application/x-www-form-urlencoded"
_ESCAPES = re.compile(rb"[&%+]")
"""What makes a form body more than `otp=<text>`: another field, or escaped characters."""
MAX_FORM_FIELDS = 8
"""A form with more fields than this is refused (`BODY:INVALID`) before any is looked at."""


def read_json_object(request: ApiRequest) -> dict[str, Any]:
    """The body as a JSON object; only `application/json` is accepted (415 otherwise).

    Requiring JSON also means a cross-origin page cannot send this request without a CORS
    preflight, which the server refuses for origins it does not know.
    """
    if request.media_type() != JSON:
        raise UnsupportedMediaType("This route accepts application/json only.")
    return _json_object(request.body)


def read_code(request: ApiRequest) -> str:
    """The `otp` field of a form or JSON body, as text (format checks come later)."""
    kind = request.media_type()
    body = request.body
    if kind == FORM:
        if body.startswith(b"otp=") and body.isascii() and not _ESCAPES.search(body):
            # What the sign-in page sends: one field, nothing escaped, so parsing could only
            # return the text after `otp=` (a tenth of `parse_qs`'s cost).
            return body[4:].decode("ascii")
        try:
            fields = parse_qs(
                body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS
            )
        except (UnicodeDecodeError, ValueError):
            raise BodyInvalid() from None
        values = fields.get("otp", [])
        if len(values) != 1:
            raise OtpInvalidFormat("Send exactly one `otp` field.")
        return values[0]
    if kind == JSON:
        value = _json_object(body).get("otp")
        if not isinstance(value, str):
            raise OtpInvalidFormat("Send the code as the string field `otp`.")
        return value
    raise UnsupportedMediaType(
        "This route accepts application/x-www-form-urlencoded or application/json."
    )


def _json_object(body: bytes) -> dict[str, Any]:
    # pydantic-core's parser: a tenth of `json.loads`'s cost, and stricter where JSON is
    # (RFC 8259: UTF-8 only, no byte-order mark, no lone surrogates, bounded nesting).
    # Only keys are interned, so credentials never sit in a process-wide string cache.
    try:
        data = from_json(body, cache_strings="keys")
    except ValueError:
        raise BodyInvalid("The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise BodyInvalid("The body must be a JSON object.")
    # The fast parser keeps the last of two equal keys without a word, so a body could
    # mean one thing here and another to a proxy or log reader that keeps the first.
    # Every key in the text is followed by exactly one colon, so when the body holds no
    # more colons than the parsed result holds keys, no key was repeated; only a body with
    # colons inside its strings takes the slower, exact check.
    if body.count(b":") > _count_keys(data):
        try:
            json.loads(body, object_pairs_hook=_refuse_duplicates)
        except ValueError:
            raise BodyInvalid("The body names a key twice.") from None
    return data


def _count_keys(value: Any) -> int:
    if isinstance(value, dict):
        return len(value) + sum(_count_keys(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_keys(v) for v in value)
    return 0


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result
