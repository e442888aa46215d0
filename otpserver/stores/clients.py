"""The Redis client for a store URL: redis-py's maintained clients, or the fast one for a primary.

`OTP_STORE_URL` names the deployment (`otpserver.settings.store`), and the client follows:
`redis.asyncio.Sentinel` for `redis+sentinel://` (it asks the Sentinels where the primary
is, and drops a connection whose primary answers READONLY after a failover),
`redis.asyncio.RedisCluster` for `redis+cluster://` (it keeps the slot map and follows
MOVED and ASK), and for one primary either the store's own fast client
(`otpserver.stores.connections`) or, with `?client=redis-py`, `redis.asyncio.Redis`. Routing
is always redis-py's; this module only adapts every client to the few calls the stores make.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster, Sentinel
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import MovedError, NoScriptError, ReadOnlyError

from otpserver.settings.store import StoreUrl, parse_store_url
from otpserver.stores.connections import (
    MAX_CONNECTIONS,
    Argument,
    RedisClient,
    Script,
    fast_path_supported,
)

log = logging.getLogger("otpserver.stores")

ROUTED_MAX_CONNECTIONS = 1024
"""Connections per node for the Sentinel and Cluster clients, whose redis-py pools fail a
call beyond their limit rather than wait: high enough that a burst never meets it."""


class StoreClient(Protocol):
    """What the Redis stores send through, whichever client the URL chose."""

    wait_replicas: int
    """Replicas a consuming or charging step waits for (`OTP_REDIS_WAIT_REPLICAS`)."""

    @property
    def server(self) -> tuple[object, ...]:
        """Which deployment and database this client talks to (alike clients share keys)."""
        ...

    async def execute(self, *command: Argument) -> Any:
        """Send `command`; an error reply raises `ResponseError`."""
        ...

    async def pipeline(self, commands: Sequence[Sequence[Argument]]) -> list[Any]:
        """Send `commands` in order on one connection (one node), in one round trip; error
        replies come back in their place as `ResponseError`s."""
        ...

    async def run_script(
        self, script: Script, keys: Sequence[bytes], args: Sequence[Argument]
    ) -> Any:
        """Run `script` (EVALSHA, or EVAL once the server lost it)."""
        ...

    async def eviction_policies(self) -> set[str]:
        """`maxmemory-policy` of every primary (one, except on a cluster)."""
        ...

    async def delete_matching(self, pattern: bytes) -> int:
        """Delete every key matching `pattern` (SCAN, then UNLINK); how many went."""
        ...

    async def aclose(self) -> None:
        """Close every connection."""
        ...


class FastClient(RedisClient):
    """The fast client for one primary, with the options every store client carries."""

    def __init__(self, url: str, *, timeout_seconds: float, max_connections: int, wait: int):
        super().__init__(
            url, connect_timeout_seconds=timeout_seconds, max_connections=max_connections
        )
        self.wait_replicas = wait

    async def eviction_policies(self) -> set[str]:
        return {_policy(await self.execute(b"INFO", b"memory"))}

    async def delete_matching(self, pattern: bytes) -> int:
        cursor, deleted = b"0", 0
        while True:
            cursor, keys = await self.execute(b"SCAN", cursor, b"MATCH", pattern, b"COUNT", 1000)
            if keys:
                deleted += int(await self.execute(b"UNLINK", *keys))
            if cursor == b"0":
                return deleted


class MaintainedClient:
    """One of redis-py's maintained asyncio clients, adapted to `StoreClient`."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        server: tuple[object, ...],
        *,
        wait: int = 0,
        sentinel: Sentinel | None = None,
    ) -> None:
        self._client = client
        self._server = server
        self._sentinel = sentinel
        self.wait_replicas = wait
        self._cold = isinstance(client, RedisCluster)
        self._warming = asyncio.Lock()

    @property
    def server(self) -> tuple[object, ...]:
        return self._server

    async def execute(self, *command: Argument) -> Any:
        if self._cold:
            await self._warm()
        try:
            return await self._client.execute_command(*_named(command))
        except (ReadOnlyError, MovedError):
            await self._dropped()
            raise

    async def _warm(self) -> None:
        # A cluster client's first calls all fetch the slot map; racing, they reset each
        # other's fresh node connections. One fetch before any command avoids that.
        async with self._warming:
            if self._cold and isinstance(self._client, RedisCluster):
                await self._client.initialize()
            self._cold = False

    async def pipeline(self, commands: Sequence[Sequence[Argument]]) -> list[Any]:
        if self._cold:
            await self._warm()
        # Without a transaction: redis-py sends the commands together on one connection (on
        # a cluster, on the node owning their one hash slot) and reads the replies in order.
        pipe = self._client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*_named(command))
        answers: list[Any] = await pipe.execute(raise_on_error=False)
        if any(isinstance(a, ReadOnlyError | MovedError) for a in answers):
            await self._dropped()
        return answers

    async def run_script(
        self, script: Script, keys: Sequence[bytes], args: Sequence[Argument]
    ) -> Any:
        try:
            return await self.execute(b"EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.execute(b"EVAL", script.source, len(keys), *keys, *args)

    async def eviction_policies(self) -> set[str]:
        if isinstance(self._client, RedisCluster):
            replies = await self._client.info("memory", target_nodes=RedisCluster.PRIMARIES)
            return {str(reply.get("maxmemory_policy", "")) for reply in replies.values()}
        reply = await self._client.info("memory")
        return {str(reply.get("maxmemory_policy", ""))}

    async def delete_matching(self, pattern: bytes) -> int:
        deleted, batch = 0, []
        # On a cluster this scans every primary; the keys share one hash tag, so a batch is
        # always one slot's.
        async for key in self._client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += int(await self.execute(b"UNLINK", *batch))
                batch = []
        if batch:
            deleted += int(await self.execute(b"UNLINK", *batch))
        return deleted

    async def aclose(self) -> None:
        await self._client.aclose()
        if self._sentinel is not None:
            for sentinel in self._sentinel.sentinels:
                await sentinel.aclose()

    async def _dropped(self) -> None:
        # A demoted primary (READONLY) or a moved slot seen by a client that does not route:
        # close the connections to it so the next call connects afresh. Sentinel and
        # Cluster clients handle these answers themselves; this covers a plain `Redis`.
        if isinstance(self._client, Redis) and self._sentinel is None:
            await self._client.connection_pool.disconnect()


def _policy(info: bytes) -> str:
    for line in info.splitlines():
        name, _, value = line.partition(b":")
        if name == b"maxmemory_policy":
            return value.strip().decode()
    return ""


def _named(command: Sequence[Argument]) -> tuple[Argument, ...]:
    # redis-py routes and parses by the command's name as text (`EVALSHA` by its keys).
    name = command[0]
    return (name.decode() if isinstance(name, bytes) else name, *command[1:])


def redis_client(
    url: str,
    timeout_seconds: float,
    *,
    max_connections: int = MAX_CONNECTIONS,
    wait_replicas: int = 0,
) -> StoreClient:
    """A client for the stores, chosen by `url` (see the module docstring).

    The stores bound each call to `timeout_seconds` as a whole. There is no retry with
    backoff, which would hold requests open during an outage: the server answers 503 at
    once and the next request connects again (on a cluster, redis-py still follows MOVED
    and ASK, and refreshes its slot map, within that time). Connecting has its own limit,
    the same `timeout_seconds`.
    """
    parsed = parse_store_url(url)
    if parsed.kind == "memory":
        raise ValueError("memory:// is not a Redis URL")
    if parsed.kind == "redis":
        if parsed.client == "fast" and fast_path_supported():
            return FastClient(
                parsed.redis_url,
                timeout_seconds=timeout_seconds,
                max_connections=max_connections,
                wait=wait_replicas,
            )
        if parsed.client == "fast":
            log.warning("redis-py is outside the fast client's checked versions; using Redis")
        # A blocking pool: a burst beyond `max_connections` waits for a free connection
        # (within the store's deadline), as the fast client does, instead of failing.
        pool = BlockingConnectionPool.from_url(
            parsed.redis_url, timeout=timeout_seconds, **_options(timeout_seconds, max_connections)
        )
        plain = Redis.from_pool(pool)  # owns the pool: `aclose` closes its connections
        return MaintainedClient(plain, _identity(parsed), wait=wait_replicas)
    if parsed.kind == "sentinel":
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(parsed.hosts),
            sentinel_kwargs={
                "password": parsed.options.get("sentinel_password"),
                "socket_timeout": timeout_seconds,
                "socket_connect_timeout": timeout_seconds,
                "retry": Retry(NoBackoff(), 0),
            },
            **_tls(parsed),
            **_options(timeout_seconds, ROUTED_MAX_CONNECTIONS),
            username=parsed.username,
            password=parsed.password,
            db=parsed.db,
        )
        primary = sentinel.master_for(parsed.service)
        return MaintainedClient(primary, _identity(parsed), wait=wait_replicas, sentinel=sentinel)
    options = _options(timeout_seconds, ROUTED_MAX_CONNECTIONS)
    # redis-py's own retries stay on a cluster: after a node fails over it refreshes the
    # slot map and tries again (within the store's deadline, which bounds every call).
    del options["retry"]
    cluster = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in parsed.hosts],
        username=parsed.username,
        password=parsed.password,
        **_tls(parsed),
        **options,
    )
    return MaintainedClient(cluster, _identity(parsed), wait=wait_replicas)


def _options(timeout_seconds: float, max_connections: int) -> dict[str, Any]:
    return {
        "socket_timeout": timeout_seconds,
        "socket_connect_timeout": timeout_seconds,
        "retry": Retry(NoBackoff(), 0),
        "max_connections": max_connections,
        "decode_responses": False,
    }


def _tls(parsed: StoreUrl) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if "client_name" in parsed.options:
        options["client_name"] = parsed.options["client_name"]
    if not parsed.tls:
        return options
    options["ssl"] = True
    for name in ("ssl_ca_certs", "ssl_cert_reqs"):
        if name in parsed.options:
            options[name] = parsed.options[name]
    if "ssl_check_hostname" in parsed.options:
        options["ssl_check_hostname"] = parsed.options["ssl_check_hostname"] == "true"
    return options


def _identity(parsed: StoreUrl) -> tuple[object, ...]:
    return (parsed.kind, parsed.hosts, parsed.path, parsed.service, parsed.db, parsed.username)


__all__ = ["FastClient", "MaintainedClient", "StoreClient", "redis_client"]
