"""Request data in error lines: a `%0a`/`%1b` path neither forges a line nor reaches the
operator's terminal as an escape sequence (SECURITY.md item 47)."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from otpserver.http.exchange import ApiEndpoint, ApiRequest, ApiResponse
from otpserver.observability.logs import JsonFormatter, TextFormatter

FORGING_PATH = "/api/otp/create\nINFO otpserver: verified ada@example.com\x1b[2J"
"""What `%0a` and `%1b` in a request path decode to."""


async def crash(request: ApiRequest) -> ApiResponse:
    raise RuntimeError("a handler bug")


async def test_the_error_line_of_a_forging_path_is_escaped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The unhandled-error line names the path with its line break and escape character
    written as escapes, in text and JSON alike: one record, one line, no raw ESC."""
    endpoint = ApiEndpoint(crash, 4096)
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": FORGING_PATH, "headers": []}
    with caplog.at_level(logging.ERROR, logger="otpserver"):
        await endpoint(scope, receive, send)  # type: ignore[arg-type]
    assert sent[0]["status"] == 500
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    text = TextFormatter().format(record)
    first_line = text.split("\n", 1)[0]
    assert "\\nINFO otpserver: verified" in first_line
    assert "\\x1b[2J" in first_line
    assert "\x1b" not in text
    document = json.loads(JsonFormatter().format(record))
    assert document["message"].endswith(FORGING_PATH)
    assert "\x1b" not in JsonFormatter().format(record)


async def test_an_absurd_content_length_on_a_forging_path_logs_no_error(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The request that used to crash into an error line (thousands of digits in
    Content-Length) is now a plain 400, and no error is logged for it at all."""
    with caplog.at_level(logging.WARNING):
        response = await client.post(
            "/api/otp/create%0aINFO%20forged%1b[2J",
            content=b"{}",
            headers={"content-type": "application/json", "content-length": "9" * 5000},
        )
    assert response.status_code == 400
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
