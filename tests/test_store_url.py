"""`OTP_STORE_URL` and the Redis options: every deployment's form, and one clear line otherwise."""

from __future__ import annotations

import inspect

import pytest
import redis
from redis.asyncio.connection import AbstractConnection, ConnectionPool

from otpserver.errors import ConfigError
from otpserver.settings.environment import Settings
from otpserver.settings.store import RedisOptions, parse_store_url
from otpserver.stores import connections
from otpserver.stores.clients import FastClient, MaintainedClient, redis_client


def test_each_deployment_has_its_form() -> None:
    """Single primary (TCP, TLS, socket), Sentinel with a service and Cluster with seeds."""
    single = parse_store_url("rediss://u:p%40ss@cache.example:6380/2?ssl_cert_reqs=required")
    assert (single.kind, single.tls, single.hosts, single.db) == (
        "redis",
        True,
        (("cache.example", 6380),),
        2,
    )
    assert single.password == "p@ss"
    assert parse_store_url("unix:///run/redis.sock?db=3").path == "/run/redis.sock"
    sentinel = parse_store_url("redis+sentinel://s1:26379,s2:26380,[::1]/mymaster/1")
    assert sentinel.kind == "sentinel"
    assert sentinel.hosts == (("s1", 26379), ("s2", 26380), ("::1", 6379))
    assert (sentinel.service, sentinel.db) == ("mymaster", 1)
    cluster = parse_store_url("redis+cluster://n1:7000,n2:7001")
    assert (cluster.kind, cluster.hosts) == ("cluster", (("n1", 7000), ("n2", 7001)))


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://a:6379,b:6379/0", "host list needs redis+sentinel:// or redis+cluster://"),
        ("redis://localhost:6379/0?timeout=5", "unknown parameter 'timeout'"),
        ("redis://localhost:6379/0?ssl_ca_certs=/ca.pem", "unknown parameter 'ssl_ca_certs'"),
        ("redis://localhost:notaport/0", "malformed port"),
        ("redis://localhost:6379/zero", "database that is not a number"),
        ("redis://localhost:6379?db=2", "in the path (/0)"),
        ("redis+cluster://n1:7000/3", "only database 0"),
        ("redis+sentinel://s1:26379", "Sentinel service name"),
        ("redis+sentinel://s1:26379/m?client=redis-py", "unknown parameter 'client'"),
        ("redis://localhost:6379/0?client=hiredis", "client must be one of"),
        ("postgres://localhost/otp", "must start with memory://"),
        ("memory://extra", "takes nothing after the scheme"),
        ("redis://localhost/0#frag", "#fragment"),
        ("redis://,b/0", "empty host"),
    ],
)
def test_bad_urls_stop_start_up_with_one_line_naming_the_variable(url: str, says: str) -> None:
    """Malformed URLs, unknown parameters, host lists and database numbers on a cluster are
    refused at start-up, each with one line naming OTP_STORE_URL."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"OTP_ENV": "development", "OTP_STORE_URL": url})
    message = str(caught.value)
    assert "OTP_STORE_URL" in message
    assert says in message
    assert "\n" not in message


def test_waiting_for_replicas_is_read_and_checked_against_the_url() -> None:
    """`OTP_REDIS_WAIT_REPLICAS` needs a Redis URL, and is refused on a cluster (where the
    WAIT would not reach the node that took the write)."""
    options = RedisOptions.from_env(
        {"OTP_STORE_URL": "redis://h:6379/0", "OTP_REDIS_WAIT_REPLICAS": "2"}
    )
    assert options.wait_replicas == 2
    for url, says in [("memory://", "needs a Redis"), ("redis+cluster://h:7000", "cluster")]:
        with pytest.raises(ConfigError, match=says):
            RedisOptions.from_env({"OTP_STORE_URL": url, "OTP_REDIS_WAIT_REPLICAS": "1"})
    with pytest.raises(ConfigError, match="OTP_REDIS_ALLOW_EVICTION"):
        RedisOptions.from_env({"OTP_REDIS_ALLOW_EVICTION": "maybe"})


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://127.0.0.1:6379/0", FastClient),
        ("redis://127.0.0.1:6379/0?client=redis-py", MaintainedClient),
        ("redis+sentinel://127.0.0.1:26379/otp", MaintainedClient),
        ("redis+cluster://127.0.0.1:7000", MaintainedClient),
    ],
)
def test_the_url_chooses_the_client(url: str, kind: type) -> None:
    """One primary goes through the fast client (or redis-py's `Redis` on request),
    Sentinel and Cluster through redis-py's own clients."""
    assert isinstance(redis_client(url, 1.0), kind)


def test_the_fast_client_is_fenced_to_the_redis_py_versions_it_was_checked_on() -> None:
    """Outside `REDIS_PY_VERSIONS` the fast client steps aside; the installed redis-py is
    inside, so the suite tests the fast client as it runs."""
    assert connections.fast_path_supported(redis.__version__)
    assert not connections.fast_path_supported("9.0.0")
    assert not connections.fast_path_supported("4.6.0")
    assert not connections.fast_path_supported("unknown")


def test_the_redis_py_internals_the_fast_client_uses_keep_their_shape() -> None:
    """Each internal listed in `INTERNALS` is still there, with the arguments used."""
    assert len(connections.INTERNALS) == 7
    options = ConnectionPool.from_url("redis://127.0.0.1:6379/0")
    assert issubclass(options.connection_class, AbstractConnection)
    assert isinstance(options.connection_kwargs, dict)
    assert "check_health" in inspect.signature(AbstractConnection.send_packed_command).parameters
    assert "nowait" in inspect.signature(AbstractConnection.disconnect).parameters
    assert isinstance(inspect.getattr_static(AbstractConnection, "is_connected"), property)
    assert callable(AbstractConnection.read_response)
    import hiredis

    assert hiredis.pack_command((b"PING",)) == b"*1\r\n$4\r\nPING\r\n"
