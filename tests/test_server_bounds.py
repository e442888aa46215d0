"""The HTTP server's own bounds, against a real uvicorn process: request deadlines, request-head
sizes and the connection cap keep `/health` answering (SECURITY.md item 46)."""

from __future__ import annotations

import contextlib
import resource
import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.support.process import ServerProcess

pytestmark = pytest.mark.e2e

WAIT_SECONDS = 20.0
"""How long a socket read waits for the server's answer or close: a bound, not a measure."""


def connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_SECONDS)
    sock.settimeout(WAIT_SECONDS)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def health(server: ServerProcess) -> int:
    return httpx.get(f"{server.url}/health", timeout=WAIT_SECONDS).status_code


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """A server with a one-second request deadline and small request-head bounds."""
    process = ServerProcess(
        {
            "OTP_REQUEST_TIMEOUT_SECONDS": "1",
            "OTP_MAX_HEADER_BYTES": "8192",
            "OTP_MAX_URL_BYTES": "2048",
        }
    )
    process.start()
    yield process
    process.stop()


def test_a_connection_that_sends_nothing_is_closed(server: ServerProcess) -> None:
    """An idle connection with no request is closed once the request deadline passes."""
    with connect(server) as sock:
        assert read_until_closed(sock) == b""
    assert health(server) == 200


def test_a_half_sent_request_head_is_closed(server: ServerProcess) -> None:
    """A head that stops arriving (slowloris) is closed at the deadline, not kept open."""
    with connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
        assert read_until_closed(sock) == b""
    assert health(server) == 200


def test_a_half_sent_body_is_closed_and_nothing_runs(server: ServerProcess) -> None:
    """A body that stops arriving closes the connection without an answer or a 500."""
    with connect(server) as sock:
        sock.sendall(
            b"POST /api/otp/create HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"email"'
        )
        assert read_until_closed(sock) == b""
    assert "Traceback" not in server.output()
    assert health(server) == 200


def test_a_one_mebibyte_header_is_refused_early(server: ServerProcess) -> None:
    """A 1 MiB header gets 431 (or a closed connection) and the server goes on answering."""
    with connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        # Closed before the whole header went out: the bound held.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"a" * (1 << 20) + b"\r\n\r\n")
        try:
            answer = read_until_closed(sock)
        except ConnectionResetError:
            answer = b""
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 ")
    assert health(server) == 200


def test_many_small_headers_are_bounded_together(server: ServerProcess) -> None:
    """The head is bounded as a whole, not only header by header."""
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(200))
    with connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + b"\r\n")
        assert read_until_closed(sock).startswith(b"HTTP/1.1 431 ")


def test_a_long_url_is_refused(server: ServerProcess) -> None:
    """A URL past the bound gets 414; one inside it is served."""
    long_url = f"{server.url}/health?x={'a' * 4000}"
    assert httpx.get(long_url, timeout=WAIT_SECONDS).status_code == 414
    assert httpx.get(f"{server.url}/health?x=a", timeout=WAIT_SECONDS).status_code == 200


def test_held_sockets_beyond_the_file_limit_do_not_take_health_down() -> None:
    """1,100 idle sockets against a worker limited to 256 open files and 64 connections:
    new connections take the place of the longest-idle ones, and `/health` answers."""
    server = ServerProcess({"OTP_MAX_CONNECTIONS": "64", "OTP_REQUEST_TIMEOUT_SECONDS": "120"})
    server.start()
    held: list[socket.socket] = []
    try:
        resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (256, 256))
        for _ in range(1100):
            held.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        assert health(server) == 200
    finally:
        for sock in held:
            sock.close()
        server.stop()
