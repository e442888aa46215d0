"""Several workers through real processes: each listens on the port with its own socket.

Which worker holds a connection is read from `/proc` (the accepted socket is in exactly one
worker's descriptors), so the tests see what the kernel did without asking the server.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.conftest import MASTER_KEY_TEXT
from tests.support import sockets
from tests.support.process import ServerProcess
from tests.support.redis_server import free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]

CONNECTIONS = 64
"""Fresh connections: the chance that the kernel hashes all of them to one of two sockets
is 2**-63."""


def server_env(redis_url: str) -> dict[str, str]:
    return {"OTP_WORKERS": "2", "OTP_STORE_URL": redis_url, "OTP_MASTER_KEY": MASTER_KEY_TEXT}


def wait_until(condition: Callable[[], bool], what: str, server: ServerProcess) -> None:
    """Poll `condition` for as long as a busy machine may need; fail naming `what`."""
    deadline = time.monotonic() + 60
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never {what}:\n{server.log()}")
        time.sleep(0.05)


def listening_workers(server: ServerProcess, count: int = 2) -> set[int]:
    """The worker processes once `count` of them accept connections on the port."""
    found: set[int] = set()

    def listening() -> bool:
        found.clear()
        found.update(sockets.listening_workers(server.pid, server.port))
        return len(found) == count

    wait_until(listening, f"{count} workers listening", server)
    return found


def serving_worker(server: ServerProcess) -> int | None:
    """GET /health on a fresh connection; the worker holding that connection."""
    port = server.port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = client.recv(4096)
            assert chunk, answer
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        # Answered, so accepted: the server's end is held by the worker that answered.
        inode = sockets.accepted_inode(port, client.getsockname()[1])
        assert inode is not None
        return sockets.owner(inode, set(sockets.children(server.pid)))


@pytest.fixture
def two_workers(redis_url: str) -> Iterator[ServerProcess]:
    """The server with OTP_WORKERS=2 on Redis, both workers listening."""
    server = ServerProcess(server_env(redis_url))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_connections_spread_over_both_workers(two_workers: ServerProcess) -> None:
    """Each worker has a listening socket of its own on the port, and fresh connections
    reach both of them."""
    workers = listening_workers(two_workers)
    assert len(sockets.listening_inodes(two_workers.port)) == 2
    served = Counter(serving_worker(two_workers) for _ in range(CONNECTIONS))
    assert set(served) == workers, served


def test_sigterm_stops_every_worker_gracefully_and_exits_0(two_workers: ServerProcess) -> None:
    """SIGTERM to the supervisor reaches both workers, each shuts down through uvicorn's
    own shutdown, and the supervisor exits 0 after them."""
    workers = listening_workers(two_workers)
    assert two_workers.stop() == 0
    assert all(sockets.has_exited(pid) for pid in workers)
    output = two_workers.output()
    for pid in workers:
        assert f"Finished server process [{pid}]" in output, output


def test_a_killed_worker_is_replaced_while_the_other_serves(two_workers: ServerProcess) -> None:
    """A worker killed outright is logged and replaced; meanwhile the others answer."""
    workers = listening_workers(two_workers)
    killed, survivor = sorted(workers)
    its_socket = sockets.socket_inodes(killed) & sockets.listening_inodes(two_workers.port)
    os.kill(killed, signal.SIGKILL)
    # Gone once the kernel has closed its socket (the last of its threads has exited).
    wait_until(
        lambda: not its_socket & sockets.listening_inodes(two_workers.port),
        f"worker {killed} closed its socket",
        two_workers,
    )
    # The survivor or, once it listens, the replacement.
    assert all(serving_worker(two_workers) not in (killed, None) for _ in range(8))
    replaced = listening_workers(two_workers)
    assert survivor in replaced
    assert killed not in replaced
    assert f"worker [{killed}] exited with status -9 while serving" in two_workers.output()
    assert httpx.get(f"{two_workers.url}/health", timeout=10).status_code == 200


def test_a_frozen_worker_is_killed_and_replaced(redis_url: str) -> None:
    """A worker that stops being heard from (frozen here with SIGSTOP; a loop blocked by a
    stuck call looks the same) would keep its socket and its share of new connections
    forever; after `OTP_WORKER_TIMEOUT_SECONDS` of silence the supervisor kills it, says
    why, and a replacement takes its place. The other worker keeps beating and is left be."""
    env = {**server_env(redis_url), "OTP_WORKER_TIMEOUT_SECONDS": "5"}
    server = ServerProcess(env)
    server.start()
    try:
        workers = listening_workers(server)
        frozen, survivor = sorted(workers)
        os.kill(frozen, signal.SIGSTOP)
        wait_until(lambda: sockets.has_exited(frozen), f"worker {frozen} killed", server)
        replaced = listening_workers(server)
        assert survivor in replaced
        assert frozen not in replaced
        output = server.output()
        assert f"worker [{frozen}] sent no heartbeat for " in output, output
        assert f"worker [{frozen}] exited with status -9 while serving" in output
        assert f"worker [{survivor}] sent no heartbeat" not in output
        assert all(serving_worker(server) in replaced for _ in range(8))
    finally:
        server.stop()


def test_a_pause_of_the_whole_machine_kills_no_worker(redis_url: str) -> None:
    """Everything frozen at once (a paused VM, a suspended laptop), past the timeout: the
    workers' silence proves nothing then, since the supervisor was frozen too. Resumed
    first, it sees its wait return late and gives each worker a fresh timeout instead of
    killing them all before they could beat again."""
    env = {**server_env(redis_url), "OTP_WORKER_TIMEOUT_SECONDS": "5"}
    server = ServerProcess(env)
    server.start()
    try:
        workers = listening_workers(server)
        os.kill(server.pid, signal.SIGSTOP)
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
        time.sleep(7)
        os.kill(server.pid, signal.SIGCONT)
        time.sleep(0.5)  # the supervisor runs alone for a moment, as it may on a resume
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
        time.sleep(6)  # past a fresh timeout: a worker that does not beat is killed by now
        assert listening_workers(server) == workers
        assert "sent no heartbeat" not in server.output()
    finally:
        server.stop()


@pytest.mark.parametrize("share_port", [False, True], ids=["plain", "reuseport"])
def test_a_port_in_use_stops_start_up(redis_url: str, share_port: bool) -> None:
    """Something already listening on the port, even a socket that would share it (as a
    stale server's worker would), stops start-up with one clear line and status 1."""
    port = free_port()
    with socket.socket() as holder:
        if share_port:
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", port))
        holder.listen()
        server = ServerProcess(server_env(redis_url), port=port)
        server.launch()
        try:
            status = server.wait_for_exit()
        finally:
            server.stop()
    assert status == 1, server.output()
    line = f"otpserver: cannot listen on 127.0.0.1:{port} (OTP_HOST, OTP_PORT): "
    assert line + "Address already in use" in server.output()
    assert "started worker" not in server.output()


def test_workers_that_keep_failing_to_start_stop_the_supervisor(redis_url: str) -> None:
    """Workers that exit before serving are restarted a few times, later each time, then the
    supervisor gives up with status 1 instead of restarting forever."""
    server = ServerProcess(server_env(redis_url), module="tests.support.failing_workers")
    server.launch()
    try:
        status = server.wait_for_exit(timeout=180)
    finally:
        server.stop()
    output = server.output()
    assert status == 1, output
    assert "workers in a row exited before serving" in output
    assert output.count("before serving; starting a replacement in") >= 3
    assert "starting a replacement in 0.5 s" in output
    assert "starting a replacement in 1.0 s" in output
