"""Logs: text and JSON lines, request ids on every line of a request, client input escaped."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from otpserver.http.app import OtpApp
from otpserver.observability.logs import (
    REQUEST_ID,
    JsonFormatter,
    RequestIdFilter,
    TextFormatter,
    configure_logging,
    escape_control,
)
from otpserver.observability.requests import loggable_path
from otpserver.settings.operations import OperationsConfig
from otpserver.settings.proxies import parse_trusted_proxies
from tests.conftest import AppFactory
from tests.support.process import ServerProcess
from tests.support.redis_server import free_port


def test_control_characters_are_escaped() -> None:
    """Line breaks, escape sequences, NUL, DEL, C1 controls and Unicode line separators all
    become visible escapes; ordinary text, accents included, is left alone."""
    assert escape_control("a\nb\rc\td") == "a\\nb\\rc\\td"
    assert escape_control("\x1b[31mred\x00\x7f\x85") == "\\x1b[31mred\\x00\\x7f\\x85"
    assert escape_control("x\u2028y\u2029") == "x\\u2028y\\u2029"
    assert escape_control("café /api/otp") == "café /api/otp"


@given(st.text())
def test_no_control_character_survives_escaping(text: str) -> None:
    """Whatever the text, the printable shortcut and the escaping pass together leave no
    character a terminal or a line-based reader would act on."""
    escaped = escape_control(text)
    assert not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", escaped)
    if text.isprintable():
        assert escaped == text


@pytest.fixture
def record_switches() -> Iterator[None]:
    """Restores the process-wide switches `configure_logging` may turn off."""
    saved = (logging.logThreads, logging.logProcesses, logging.logMultiprocessing)
    source = logging._srcfile
    root = logging.getLogger()
    handlers = root.handlers[:]
    # As a fresh interpreter has them, whatever an earlier test configured.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = True
    logging._srcfile = os.path.normcase(logging.addLevelName.__code__.co_filename)
    yield
    logging.logThreads, logging.logProcesses, logging.logMultiprocessing = saved
    logging._srcfile = source
    root.handlers[:] = handlers


def test_records_skip_what_no_formatter_prints(record_switches: None) -> None:
    """With the server's own formatter on every root handler, records no longer look up
    their caller, thread or process: work no line shows."""
    root = logging.getLogger()
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(TextFormatter())
    root.handlers[:] = [handler]
    configure_logging("text")
    record = logging.getLogger("otpserver.test").makeRecord(
        "otpserver.test", logging.INFO, "f", 1, "m", (), None
    )
    assert (record.thread, record.process) == (None, None)
    assert logging._srcfile is None


def test_a_foreign_formatter_keeps_every_record_field(record_switches: None) -> None:
    """An embedding application's handler may print the thread or the caller: then
    nothing is turned off."""
    root = logging.getLogger()
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logging.Formatter("%(threadName)s %(filename)s %(message)s"))
    root.handlers[:] = [handler]
    configure_logging("text")
    assert logging.logThreads
    assert logging._srcfile is not None


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("otpserver.test", logging.WARNING, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    RequestIdFilter().filter(record)
    return record


def test_a_forged_line_stays_one_text_line() -> None:
    """A message carrying a client's `\\n` and `\\x1b` is one text line, with the escapes shown."""
    line = TextFormatter().format(_record("unhandled error on GET %s", "/x\nINFO forged\x1b[2J"))
    assert line == ("WARNING otpserver.test: unhandled error on GET /x\\nINFO forged\\x1b[2J")
    assert "\n" not in line
    assert "\x1b" not in line


def test_json_lines_are_one_object_each_with_the_request_id_and_fields() -> None:
    """A JSON line parses to one object with level, logger, message, request id and extras,
    and the raw control characters never appear in it."""
    token = REQUEST_ID.set("req-1")
    try:
        record = _record("path %s", "/a\nb\x1b", event={"type": "otp.sent"})
    finally:
        REQUEST_ID.reset(token)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "\x1b" not in line
    document = json.loads(line)
    assert document["level"] == "WARNING"
    assert document["logger"] == "otpserver.test"
    assert document["message"] == "path /a\nb\x1b"
    assert document["request_id"] == "req-1"
    assert document["event"] == {"type": "otp.sent"}


def test_the_access_log_hides_token_like_path_segments() -> None:
    """Segments long enough to be a token (a link's) are replaced; route names are kept."""
    assert loggable_path("/api/otp/create") == "/api/otp/create"
    assert loggable_path("/l/" + "A" * 43) == "/l/{token}"


class _Lines(logging.Handler):
    """Formats every record as the JSON log does."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.addFilter(RequestIdFilter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def json_lines() -> Iterator[_Lines]:
    """Every record logged while the test runs, as JSON lines."""
    handler = _Lines()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(previous)


async def test_every_line_of_a_request_carries_its_echoed_id(
    make_app: AppFactory,
    client_for: Callable[[OtpApp], httpx.AsyncClient],
    json_lines: _Lines,
) -> None:
    """Each request gets a fresh id, echoed in `X-Request-Id`, and every line logged while
    serving it (access line, audit event, refusal) carries that id; a client's own
    `X-Request-Id` is not believed without trusted proxies."""
    app = make_app(operations=OperationsConfig(access_log=True))
    client = client_for(app)
    json_lines.lines.clear()  # what building the app logged belongs to no request
    first = await client.post("/api/otp/create", json={"email": "ada@example.com"})
    second = await client.post(
        "/api/otp/verify", data={"otp": "000000"}, headers={"x-request-id": "chosen-by-client"}
    )
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert len(set(ids)) == 2
    assert "chosen-by-client" not in ids
    documents = [json.loads(line) for line in json_lines.lines]
    for request_id in ids:
        mine = [d for d in documents if d["request_id"] == request_id]
        assert any(d["logger"] == "otpserver.access" for d in mine), documents
    sent = [d for d in documents if d["logger"] == "otpserver.audit" and "otp." in d["message"]]
    assert [d["request_id"] for d in sent] == [ids[0], ids[1]]
    assert all(d["request_id"] in ids for d in documents if d["logger"].startswith("otpserver"))


async def test_a_trusted_proxy_sets_the_request_id(
    make_app: AppFactory, client_for: Callable[[OtpApp], httpx.AsyncClient]
) -> None:
    """From a trusted proxy, a well-formed `X-Request-Id` is kept and echoed; a malformed one
    (a line break) is replaced by a fresh id."""
    app = make_app(trusted_proxies=parse_trusted_proxies("127.0.0.1"))
    client = client_for(app)
    kept = await client.get("/health", headers={"x-request-id": "edge-7f3a"})
    assert kept.headers["x-request-id"] == "edge-7f3a"
    replaced = await client.get("/health", headers={"x-request-id": "a b"})
    assert replaced.headers["x-request-id"] != "a b"
    assert len(replaced.headers["x-request-id"]) == 16


def test_text_output_of_a_real_handler_has_one_line_per_record() -> None:
    """Through a stream handler, a record with a forged line break writes exactly one line."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    handler.emit(_record("GET %s", "/%0a".replace("%0a", "\n") + "WARNING forged"))
    assert stream.getvalue().count("\n") == 1


def raw_get(port: int, target: str) -> bytes:
    """One HTTP/1.1 GET with `target` sent byte for byte (httpx would normalise it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(
            f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
        )
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


FORGING_PATH = "/%0aINFO%20forged%0d%1b[2J%e2%80%a8"
"""Short enough for the access log to show it (a segment of 24+ characters counts as a token)."""


@pytest.mark.e2e
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_real_server_escapes_what_clients_send(log_format: str) -> None:
    """A real server with the access log: a path carrying `%0a`, `%0d`, `%1b` and U+2028
    writes one line with visible escapes, never a forged line or a raw escape; in JSON every
    line of the output parses on its own and carries a request id where it belongs."""
    server = ServerProcess({"OTP_LOG_FORMAT": log_format, "OTP_ACCESS_LOG": "true"})
    server.start()
    try:
        answer = raw_get(server.port, FORGING_PATH)
        assert answer.startswith(b"HTTP/1.1 404")
        request_id = re.search(rb"x-request-id: ([0-9a-f]{16})", answer)
        assert request_id is not None
        answer = raw_get(server.port, "/health")
    finally:
        server.stop()
    output = server.output()
    assert "\x1b" not in output
    assert "\u2028" not in output
    assert "\r" not in output
    lines = output.splitlines()
    assert not [line for line in lines if line.startswith("INFO forged")]
    access = [line for line in lines if "otpserver.access" in line and "forged" in line]
    assert len(access) == 1, output
    if log_format == "text":
        assert "GET /\\nINFO forged\\r\\x1b[2J\\u2028 404" in access[0]
        return
    documents = [json.loads(line) for line in lines]
    (line,) = [
        d for d in documents if d["logger"] == "otpserver.access" and "forged" in d["message"]
    ]
    assert line["message"].startswith("GET /\nINFO forged\r\x1b[2J\u2028 404")
    assert line["request_id"] == request_id.group(1).decode()


@pytest.mark.e2e
def test_uvicorn_run_by_hand_logs_in_the_same_format(tmp_path: Path) -> None:
    """`uvicorn --factory otpserver.asgi:build`, not `python -m otpserver`: the factory sets
    up the same JSON lines, uvicorn's own included, with request ids on the access line."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTP_")}
    env = {**clean, "OTP_ENV": "development", "OTP_LOG_FORMAT": "json", "OTP_ACCESS_LOG": "true"}
    log = tmp_path / "uvicorn.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "otpserver.asgi:build",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=15)
    documents = [json.loads(line) for line in log.read_text().splitlines()]
    loggers = {d["logger"] for d in documents}
    assert {"uvicorn.error", "otpserver.access"} <= loggers
    access = [d for d in documents if d["logger"] == "otpserver.access"]
    assert access[0]["request_id"] == answer.headers["x-request-id"]
