"""Where the shared store is and how much to trust it: `OTP_STORE_URL` and the Redis options.

The URL names the deployment, and with it the redis-py client that talks to it:

- `redis://[user:password@]host[:port][/db]`, `rediss://...` (TLS) and
  `unix:///path/to/socket[?db=n]`: one primary;
- `redis+sentinel://[user:password@]host:port,host:port,.../service[/db]` (and
  `rediss+sentinel://`): the primary that the Sentinels name for `service`, followed through
  failovers;
- `redis+cluster://[user:password@]host:port[,host:port...]` (and `rediss+cluster://`): a
  Redis Cluster or a managed cluster-mode service; any reachable nodes seed the map.

Anything else (an unknown scheme or parameter, a host list where one host is meant, a
database number on a cluster, which has only database 0) stops start-up with one line
naming `OTP_STORE_URL`, because a typo there would otherwise surface as 503s at run time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from otpserver.errors import ConfigError
from otpserver.settings.reader import EnvReader, EnvVar

StoreKind = Literal["memory", "redis", "sentinel", "cluster"]

CLIENTS = ("fast", "redis-py")
"""Single primary only: `fast` sends through the store's own connection stack
(`otpserver.stores.connections`), `redis-py` through redis-py's `Redis` client."""

_SCHEMES: dict[str, tuple[StoreKind, bool]] = {
    "memory": ("memory", False),
    "redis": ("redis", False),
    "rediss": ("redis", True),
    "unix": ("redis", False),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}

_TLS_PARAMETERS = frozenset({"ssl_ca_certs", "ssl_cert_reqs", "ssl_check_hostname"})
_PARAMETERS: dict[StoreKind, frozenset[str]] = {
    "memory": frozenset(),
    "redis": frozenset({"client", "client_name", "db"}) | _TLS_PARAMETERS,
    "sentinel": frozenset({"client_name", "sentinel_password"}) | _TLS_PARAMETERS,
    "cluster": frozenset({"client_name"}) | _TLS_PARAMETERS,
}

STORE_ENV_VARS: tuple[EnvVar, ...] = (
    EnvVar(
        "OTP_REDIS_WAIT_REPLICAS",
        "0",
        "Redis: replicas every consuming or charging step waits for (WAIT) before it counts; "
        "0 waits for none",
    ),
    EnvVar(
        "OTP_REDIS_ALLOW_EVICTION",
        "false",
        "Redis: true starts production even when maxmemory-policy may evict limit counters",
    ),
)


@dataclass(frozen=True, slots=True)
class StoreUrl:
    """`OTP_STORE_URL` taken apart and checked."""

    kind: StoreKind
    tls: bool = False
    hosts: tuple[tuple[str, int], ...] = ()
    path: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    service: str = ""
    client: str = "fast"
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def redis_url(self) -> str:
        """A single primary's URL as redis-py reads it (without the parameters only this
        server knows), with the password in it: never log it."""
        auth = ""
        if self.username is not None or self.password is not None:
            auth = _quote(self.username or "") + (
                ":" + _quote(self.password) if self.password is not None else ""
            )
            auth += "@"
        query = "&".join(f"{k}={_quote(v)}" for k, v in self.options.items())
        if self.path:
            query = "&".join(filter(None, (f"db={self.db}", query)))
            return f"unix://{auth}{self.path}?{query}"
        host, port = self.hosts[0]
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{auth}{_host(host)}:{port}/{self.db}" + (f"?{query}" if query else "")


def _quote(text: str) -> str:
    return quote(text, safe="")


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def parse_store_url(url: str) -> StoreUrl:
    """Take `url` apart, or raise `ConfigError` with one line naming `OTP_STORE_URL`."""
    try:
        return _parse(url.strip())
    except ValueError as error:
        raise ConfigError(f"OTP_STORE_URL {error}") from None


def _parse(url: str) -> StoreUrl:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise ValueError(
            "must start with memory://, redis://, rediss://, unix://, redis+sentinel:// or "
            "redis+cluster:// (rediss+... for TLS)"
        )
    kind, tls = _SCHEMES[scheme.lower()]
    if kind == "memory":
        if rest:
            raise ValueError("memory:// takes nothing after the scheme")
        return StoreUrl("memory")
    parts = urlsplit(url)
    if parts.fragment:
        raise ValueError("must not have a #fragment")
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ValueError("has a malformed query string") from None
    options: dict[str, str] = {}
    for name, value in query:
        if name not in _PARAMETERS[kind] or (name in _TLS_PARAMETERS and not tls):
            known = sorted(_PARAMETERS[kind] - (set() if tls else _TLS_PARAMETERS))
            raise ValueError(f"has an unknown parameter {name!r} (known here: {', '.join(known)})")
        if name in options:
            raise ValueError(f"gives the parameter {name!r} twice")
        options[name] = value
    client = options.pop("client", "fast")
    if client not in CLIENTS:
        raise ValueError(f"parameter client must be one of: {', '.join(CLIENTS)}")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if username == "":
        username = None
    netloc = parts.netloc.rpartition("@")[2]
    db_text = options.pop("db", None)
    if scheme.lower() == "unix":
        if netloc or not parts.path:
            raise ValueError("unix:// needs an absolute socket path: unix:///run/redis.sock")
        db = _db(db_text or "0")
        return StoreUrl(
            kind, tls, (), parts.path, db, username, password, client=client, options=options
        )
    if db_text is not None:
        raise ValueError("gives the database in the path (/0), not as ?db=")
    hosts = _hosts(netloc)
    path = parts.path.strip("/")
    if kind == "redis":
        if len(hosts) != 1:
            raise ValueError(
                "names several hosts: a host list needs redis+sentinel:// or redis+cluster://"
            )
        return StoreUrl(
            kind,
            tls,
            hosts,
            "",
            _db(path or "0"),
            username,
            password,
            client=client,
            options=options,
        )
    if kind == "cluster":
        if path not in ("", "0"):
            raise ValueError(
                "names a database, but a Redis Cluster has only database 0: drop the /db"
            )
        return StoreUrl(kind, tls, hosts, "", 0, username, password, options=options)
    service, _, db_part = path.partition("/")
    if not service:
        raise ValueError("needs the Sentinel service name: redis+sentinel://h1:26379,h2/mymaster")
    return StoreUrl(
        kind, tls, hosts, "", _db(db_part or "0"), username, password, service, options=options
    )


def _db(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) > 1_000_000:
        raise ValueError(f"has a database that is not a number: {text!r}")
    return int(text)


def _hosts(netloc: str) -> tuple[tuple[str, int], ...]:
    hosts: list[tuple[str, int]] = []
    for item in netloc.split(","):
        if not item:
            raise ValueError("has an empty host")
        if item.startswith("["):
            host, _, port_text = item[1:].partition("]")
            port_text = port_text.removeprefix(":")
        else:
            host, _, port_text = item.partition(":")
        if not host or any(c in host for c in "/?#[]@ "):
            raise ValueError(f"has a malformed host {item!r}")
        port = 6379 if not port_text else _port(port_text)
        hosts.append((host, port))
    return tuple(hosts)


def _port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"has a malformed port {text!r}")
    return int(text)


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """How far the Redis store trusts its server (SPEC §17)."""

    wait_replicas: int = 0
    allow_eviction: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> RedisOptions:
        """Read the `OTP_REDIS_*` variables and check `OTP_STORE_URL` against them."""
        reader = EnvReader(environ, STORE_ENV_VARS)
        wait = reader.integer("OTP_REDIS_WAIT_REPLICAS", 0, 16)
        allow = reader.choice("OTP_REDIS_ALLOW_EVICTION", ("false", "true")) == "true"
        try:
            url = parse_store_url(environ.get("OTP_STORE_URL", "") or "memory://")
        except ConfigError:
            # `Settings.from_env` reports a bad URL once, in its place; nothing to add here.
            return cls(wait_replicas=wait, allow_eviction=allow)
        if wait and url.kind == "memory":
            raise ConfigError("OTP_REDIS_WAIT_REPLICAS needs a Redis OTP_STORE_URL")
        if wait and url.kind == "cluster":
            raise ConfigError(
                "OTP_REDIS_WAIT_REPLICAS is not supported with redis+cluster:// OTP_STORE_URL"
            )
        return cls(wait_replicas=wait, allow_eviction=allow)
