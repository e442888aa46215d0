"""Fixtures shared by the whole suite: a real Redis server, apps on either store, clients."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from otpserver.delivery import DeliveryConfig
from otpserver.hooks import Hooks
from otpserver.http.app import OtpApp, create_app
from otpserver.settings.api import ApiSettings
from otpserver.settings.environment import Settings
from otpserver.stores import (
    MemoryIdStore,
    MemoryKeyStore,
    MemoryMarkerStore,
    RedisIdStore,
    RedisKeyStore,
    RedisMarkerStore,
    redis_client,
)
from tests.support.fakes import FakeClock, RecordingSender
from tests.support.hooks import HOOKS
from tests.support.peers import Peers
from tests.support.redis_server import Deployments, RedisServer, external_redis_url

MASTER_KEY = bytes(range(32))
MASTER_KEY_TEXT = base64.urlsafe_b64encode(MASTER_KEY).rstrip(b"=").decode()
STORES = ["memory", "redis"]
"""What the `store` fixture runs a test on, unless its module names others in `STORES`
(any of `tests.support.redis_server.BACKENDS` besides "memory"), or a test's
`redis_backends` marker narrows them."""
PUBLIC_SITE = DeliveryConfig(autofill_domain="otp.example.com")
"""Production requires the site name for messages; the tests' clients use this host."""
ISSUER = "https://otp.example.com"
SIGNING = ApiSettings(issuer=ISSUER)
"""Production requires the issuer of signed results."""


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer | None]:
    """One real Redis server for the session (None when OTP_TEST_REDIS_URL is used)."""
    if external_redis_url():
        yield None
        return
    server = RedisServer()
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_deployments(redis_server: RedisServer | None) -> Iterator[Deployments]:
    """Redis, Valkey, Cluster and Sentinel deployments, each started on first use and all
    closed at the end of the session."""
    deployments = Deployments(redis_server)
    try:
        yield deployments
    finally:
        deployments.close()


@pytest.fixture
def redis_url(request: pytest.FixtureRequest, redis_deployments: Deployments) -> str:
    """The URL of an empty database: plain Redis, unless the module or test names other
    deployments (`REDIS_BACKENDS`, or the `redis_backends` marker)."""
    return redis_deployments.url(getattr(request, "param", "redis"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run store-backed tests on the deployments their module or marker names."""
    marker = metafunc.definition.get_closest_marker("redis_backends")
    narrowed = list(marker.args) if marker else None
    if "store" in metafunc.fixturenames and not _parametrized(metafunc, "store"):
        stores = getattr(metafunc.module, "STORES", STORES)
        if narrowed is not None:
            stores = [s for s in stores if s == "memory" or s in narrowed]
        metafunc.parametrize("store", stores, indirect=True)
    elif "redis_url" in metafunc.fixturenames:
        backends = getattr(metafunc.module, "REDIS_BACKENDS", None)
        if narrowed is not None:
            backends = [b for b in backends or narrowed if b in narrowed]
        if backends:
            metafunc.parametrize("redis_url", backends, indirect=True)


def _parametrized(metafunc: pytest.Metafunc, name: str) -> bool:
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0]
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if name in names:
            return True
    return False


@pytest.fixture
def clock() -> FakeClock:
    """Time that moves only when the test advances it."""
    return FakeClock()


@pytest.fixture
def sender() -> RecordingSender:
    """A sender that records messages instead of delivering them."""
    return RecordingSender()


AppFactory = Callable[..., OtpApp]

TEST_STORE_TIMEOUT_SECONDS = 5.0
"""The apps' store deadline: generous, so a machine busy with other work never turns a slow
Redis reply into a 503 (a burst of 50 requests once took over a second there). Tests of
timeouts and outages pass a short `store_timeout_seconds` of their own."""


@pytest.fixture
def store(request: pytest.FixtureRequest) -> str:
    """Runs a test once per store backend (see `STORES`)."""
    return str(request.param)


@pytest.fixture
async def make_app(
    clock: FakeClock, sender: RecordingSender, request: pytest.FixtureRequest
) -> AsyncIterator[AppFactory]:
    """Builds apps with the injected clock and sender on the named store; closes them after."""
    apps: list[OtpApp] = []

    def build(
        store: str = "memory", hooks: Hooks = HOOKS, *, real_sender: bool = False, **settings: Any
    ) -> OtpApp:
        url = "memory://"
        if store != "memory":
            url = request.getfixturevalue("redis_deployments").url(store)
        values: dict[str, Any] = {
            "master_key": MASTER_KEY,
            "store_url": url,
            "store_timeout_seconds": TEST_STORE_TIMEOUT_SECONDS,
            "delivery": PUBLIC_SITE,
            "api": SIGNING,
        }
        values.update(settings)
        hooks = test_hooks(hooks, clock, None if real_sender else sender)
        app = create_app(Settings(**values), hooks, clock=clock)
        apps.append(app)
        return app

    yield build
    for app in apps:
        await close_app(app)


async def close_app(app: OtpApp) -> None:
    """Release the store connections an app opened (what its lifespan does on shutdown)."""
    await app.state.verifications.ids.aclose()
    await app.state.key_store.aclose()
    await app.state.counters.aclose()
    await app.state.markers.aclose()


def test_hooks(hooks: Hooks, clock: FakeClock, sender: RecordingSender | None) -> Hooks:
    """The shipped hooks, with the test's clock in the stores and its sender (if given)."""

    # The store's deadline is the second argument: the first only bounds connecting, and a
    # store left at its 1 s default answered 503 on a busy machine.
    def ids(settings: Settings) -> Any:
        timeout = settings.store_timeout_seconds
        if settings.uses_memory_store:
            return MemoryIdStore(max_ids=settings.memory_max_ids, clock=clock)
        client = redis_client(
            settings.store_url, timeout, wait_replicas=settings.redis.wait_replicas
        )
        return RedisIdStore(client, timeout)

    def keys(settings: Settings) -> Any:
        timeout = settings.store_timeout_seconds
        if settings.uses_memory_store:
            return MemoryKeyStore(clock=clock)
        return RedisKeyStore(redis_client(settings.store_url, timeout), timeout)

    def markers(settings: Settings) -> Any:
        timeout = settings.store_timeout_seconds
        if settings.uses_memory_store:
            return MemoryMarkerStore(clock=clock)
        client = redis_client(
            settings.store_url, timeout, wait_replicas=settings.redis.wait_replicas
        )
        return RedisMarkerStore(client, timeout)

    hooks = dataclasses.replace(
        hooks, make_id_store=ids, make_key_store=keys, make_marker_store=markers
    )
    if sender is None:
        return hooks
    return dataclasses.replace(hooks, make_sender=lambda settings: sender)


test_hooks.__test__ = False  # type: ignore[attr-defined]


ClientFactory = Callable[[OtpApp], Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def client_for() -> AsyncIterator[Callable[[OtpApp], httpx.AsyncClient]]:
    """Makes https clients (so Secure cookies flow) bound to an app, closed at teardown."""
    clients: list[httpx.AsyncClient] = []

    def make(app: OtpApp) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        client = httpx.AsyncClient(transport=transport, base_url="https://otp.example.com")
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def app(make_app: AppFactory, store: str) -> OtpApp:
    """A production-mode app on each store."""
    return make_app(store)


@pytest.fixture
async def client(
    app: OtpApp, client_for: Callable[[OtpApp], httpx.AsyncClient]
) -> httpx.AsyncClient:
    """A client of `app`."""
    return client_for(app)


@pytest.fixture
async def peers() -> AsyncIterator[Peers]:
    """Clients of an app from chosen socket addresses (per-address limits), closed at teardown."""
    made = Peers()
    yield made
    await made.aclose()
