"""A Redis client cut down to what the stores send to one primary: one command, one reply.

redis-py's asyncio client wraps each command in layers the stores never use: a retry
object, observability records, an event dispatcher, and a blocking pool that takes a lock,
a condition and a timer per command. Together those cost about as much CPU as sending the
command and reading its reply (docs/BENCHMARKS.md). The stores need much less: every call
already runs under one deadline (`otpserver.stores.redis`), so this client keeps a bounded
stack of redis-py connections and sends each packed command straight down one of them.

redis-py still does what it does well: parsing the URL, connecting (TCP, TLS or a Unix
socket, with AUTH and SELECT), reading replies with hiredis's parser, and closing a
connection whose read or write was cut off, so no late reply is ever taken for the answer
to a later command.

This client leans on redis-py internals, listed in `INTERNALS` and held to their expected
shape by `tests/test_store_clients.py`; `pyproject.toml` pins redis-py below its next major
version, and `fast_path_supported` keeps this client out of use on any redis-py outside
`REDIS_PY_VERSIONS`, where the maintained `redis.asyncio.Redis` serves instead
(`otpserver.stores.clients`). Every store test runs on both.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import hiredis
import redis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MovedError, NoScriptError, ReadOnlyError, ResponseError

Argument = bytes | str | int | float
"""What a command is made of: strings are sent UTF-8, numbers as their decimal text."""

MAX_CONNECTIONS = 128
"""Connections one client (one store in one process) may hold open at once."""

REDIS_PY_VERSIONS = ((5, 0), (9, 0))
"""redis-py releases (from, up to but excluding) whose internals below this client was
checked against; the test suite runs on the installed one."""

INTERNALS = (
    "redis.asyncio.connection.ConnectionPool.from_url: .connection_class, .connection_kwargs",
    "redis.asyncio.connection.AbstractConnection(**connection_kwargs)",
    "AbstractConnection.is_connected",
    "AbstractConnection.send_packed_command(packed, check_health=False)",
    "AbstractConnection.read_response() raising ResponseError subclasses for error replies",
    "AbstractConnection.disconnect(nowait=True), and disconnecting by itself on a failed read",
    "hiredis.pack_command",
)
"""What this client uses of redis-py and hiredis beyond their documented client API."""


def fast_path_supported(version: str = redis.__version__) -> bool:
    """Whether the installed redis-py is one this client's internals were checked against."""
    try:
        major_minor = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return False
    low, high = REDIS_PY_VERSIONS
    return low <= major_minor < high


def pack(command: Sequence[Argument]) -> bytes:
    """`command` in the Redis protocol, packed by hiredis's C encoder: the same bytes as
    redis-py's own packer (`tests/test_stores.py` compares them) at a fifth of the cost."""
    # hiredis's stub types the argument as a one-element tuple; any length is accepted.
    packed: bytes = hiredis.pack_command(tuple(command))  # type: ignore[arg-type]
    return packed


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script, sent by its SHA-1 so the source crosses the network once per server."""

    source: bytes
    sha: bytes

    @classmethod
    def of(cls, source: str) -> Script:
        data = source.encode()
        # SHA-1 is what Redis names scripts by, not a security measure here.
        return cls(data, hashlib.sha1(data, usedforsecurity=False).hexdigest().encode())


class RedisClient:
    """Commands over a bounded pool of redis-py connections to the server `url` names.

    A call that finds every connection busy waits for one (within the caller's deadline)
    instead of failing: a burst beyond the pool is load Redis takes easily. Idle
    connections are reused last-in first-out, so a quiet server keeps few of them warm.
    """

    def __init__(
        self, url: str, *, connect_timeout_seconds: float, max_connections: int = MAX_CONNECTIONS
    ) -> None:
        # redis-py's pool is used as the URL parser only: it picks the connection class for
        # the scheme and the keyword arguments for it; its own checkout path is never run.
        options = ConnectionPool.from_url(
            url,
            socket_timeout=None,
            socket_connect_timeout=connect_timeout_seconds,
            # Connecting is tried once: the caller's deadline and the retry of a dropped
            # pooled connection below are the only second chances.
            retry=Retry(NoBackoff(), 0),
            decode_responses=False,
        )
        self.connection_class: type[AbstractConnection] = options.connection_class
        self.connection_kwargs: dict[str, Any] = dict(options.connection_kwargs)
        self.max_connections = max_connections
        self._idle: list[AbstractConnection] = []
        self._made = 0
        self._waiters: deque[asyncio.Future[AbstractConnection]] = deque()
        self._closed = False

    @property
    def server(self) -> tuple[object, ...]:
        """Which server and database this client talks to (clients alike share their keys)."""
        kwargs = self.connection_kwargs
        fields = ("host", "port", "path", "db", "username")
        return (self.connection_class, *(kwargs.get(f) for f in fields))

    async def execute(self, *command: Argument) -> Any:
        """Send `command` and return its reply; an error reply raises `ResponseError`, a
        broken connection `redis.exceptions.ConnectionError` (or `OSError` on connecting)."""
        return (await self._send(pack(command), 1, raise_errors=True))[0]

    async def pipeline(self, commands: Sequence[Sequence[Argument]]) -> list[Any]:
        """Send `commands` together down one connection and read their replies in order, in
        one round trip; an error reply is returned in its place as a `ResponseError`."""
        packed = b"".join(pack(command) for command in commands)
        return await self._send(packed, len(commands), raise_errors=False)

    async def _send(self, packed: bytes, replies: int, *, raise_errors: bool) -> list[Any]:
        connection = await self._checkout()
        try:
            answers = await self._exchange(connection, packed, replies)
        except BaseException:
            # Cut off or broken. redis-py closes the socket itself when a read or write
            # fails; any other exit closes it here, so nothing half-read is ever reused. A
            # closed connection stays pooled and connects again when next used.
            if connection.is_connected:
                await connection.disconnect(nowait=True)
            raise
        finally:
            self._checkin(connection)
            if self._closed:
                await self.aclose()
        for answer in answers:
            if isinstance(answer, ReadOnlyError | MovedError):
                # A primary demoted by a failover (or a node that moved its slots away):
                # every connection here points at it, so drop them all and let the next
                # call connect again, through DNS or a proxy that now names the new one.
                await self._drop_all()
            if raise_errors and isinstance(answer, ResponseError):
                raise answer
        return answers

    async def _drop_all(self) -> None:
        for connection in self._idle:
            if connection.is_connected:
                await connection.disconnect(nowait=True)

    async def run_script(
        self, script: Script, keys: Sequence[bytes], args: Sequence[Argument]
    ) -> Any:
        """Run `script` on `keys` and `args` (EVALSHA, or EVAL once the server lost it)."""
        try:
            return await self.execute(b"EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            # A restarted or flushed server: EVAL runs the source and caches it again.
            return await self.execute(b"EVAL", script.source, len(keys), *keys, *args)

    async def aclose(self) -> None:
        """Close every idle connection; busy ones are closed as they come back."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.disconnect()

    @staticmethod
    async def _exchange(connection: AbstractConnection, packed: bytes, replies: int) -> list[Any]:
        if connection.is_connected:
            try:
                await connection.send_packed_command(packed, check_health=False)
                return await _read(connection, replies)
            except RedisConnectionError:
                # A pooled connection a Redis restart left dead: once more on a fresh one.
                # Never after a timeout: a command that timed out may have run, and the
                # scripts here must not run twice. One lost mid-reply may have run too; a
                # second run then finds its first run's ID already spent or filed and the
                # request answers an error (a lost claim, or a server error for a create),
                # which fails closed: nothing is granted twice.
                pass
        await connection.send_packed_command(packed, check_health=False)
        return await _read(connection, replies)

    async def _checkout(self) -> AbstractConnection:
        if self._idle:
            return self._idle.pop()
        if self._made < self.max_connections:
            connection = self.connection_class(**self.connection_kwargs)
            self._made += 1
            return connection
        waiter: asyncio.Future[AbstractConnection] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # Handed a connection just as the deadline cut the wait off: pass it on.
                self._checkin(waiter.result())
            raise

    def _checkin(self, connection: AbstractConnection) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self._idle.append(connection)


async def _read(connection: AbstractConnection, replies: int) -> list[Any]:
    """`replies` replies off `connection`; an error reply is read whole (the connection stays
    sound) and kept in its place."""
    answers: list[Any] = []
    for _ in range(replies):
        try:
            answers.append(await connection.read_response())
        except ResponseError as error:
            answers.append(error)
    return answers
