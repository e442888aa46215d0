"""A Redis client cut down to what the stores send: one command, one reply.

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
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import hiredis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

Argument = bytes | str | int | float
"""What a command is made of: strings are sent UTF-8, numbers as their decimal text."""

MAX_CONNECTIONS = 128
"""Connections one client (one store in one process) may hold open at once."""


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
        packed = pack(command)
        connection = await self._checkout()
        try:
            return await self._exchange(connection, packed)
        except ResponseError:
            raise  # The error reply was read whole: the connection is sound.
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
    async def _exchange(connection: AbstractConnection, packed: bytes) -> Any:
        if connection.is_connected:
            try:
                await connection.send_packed_command(packed, check_health=False)
                return await connection.read_response()
            except RedisConnectionError:
                # A pooled connection a Redis restart left dead: once more on a fresh one.
                # Never after a timeout: a command that timed out may have run, and the
                # scripts here must not run twice. One lost mid-reply may have run too; a
                # second run then finds its first run's ID already spent or filed and the
                # request answers an error (a lost claim, or a server error for a create),
                # which fails closed: nothing is granted twice.
                pass
        await connection.send_packed_command(packed, check_health=False)
        return await connection.read_response()

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
