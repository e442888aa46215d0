"""An in-process app driven from synchronous code, for hypothesis tests that share one app.

Hypothesis runs its examples synchronously; each request here runs to completion on a
private event loop, so the app's store connections stay on that one loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import httpx

from otpserver.http.app import OtpApp, create_app
from otpserver.otp.payload import TokenList
from otpserver.settings.environment import Settings
from otpserver.settings.overrides import LimitOverrides
from tests.conftest import MASTER_KEY, PUBLIC_SITE, SIGNING, close_app, test_hooks
from tests.support.api import Browser
from tests.support.fakes import FakeClock, RecordingSender
from tests.support.hooks import HOOKS

T = TypeVar("T")
BASE_URL = "https://otp.example.com"
UNLIMITED = 10**9

NO_LIMITS = LimitOverrides(
    numbers={
        "credential_sends": UNLIMITED,
        "address_requests": UNLIMITED,
        "address_verifies": UNLIMITED,
        "prefix_sends": UNLIMITED,
        "max_failures": 100,
        "network_requests": UNLIMITED,
        "network_verifies": UNLIMITED,
        "network_budget_percent": 100,
    },
    channel_sends_per_hour={"*": UNLIMITED, "email": UNLIMITED, "phone": UNLIMITED},
)
"""Abuse limits out of the way, for tests that send many requests from one address."""


class SyncApp:
    """A production-mode app on the given store, its clock, sender and a private loop."""

    def __init__(self, store_url: str = "memory://", **settings: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.sender = RecordingSender()
        values: dict[str, Any] = {
            "master_key": MASTER_KEY,
            "store_url": store_url,
            "delivery": PUBLIC_SITE,
            "api": SIGNING,
            "limit_overrides": NO_LIMITS,
        }
        values.update(settings)
        self.app: OtpApp = create_app(
            Settings(**values), test_hooks(HOOKS, self.clock, self.sender), clock=self.clock
        )
        self._clients: list[httpx.AsyncClient] = []
        self.client = self.client_from("192.0.2.1")

    def client_from(self, address: str) -> httpx.AsyncClient:
        """A client whose socket peer is `address` (its own per-address limit bucket)."""
        transport = httpx.ASGITransport(
            app=self.app, raise_app_exceptions=False, client=(address, 40000)
        )
        client = httpx.AsyncClient(transport=transport, base_url=BASE_URL)
        self._clients.append(client)
        return client

    def run(self, awaitable: Awaitable[T]) -> T:
        return self.loop.run_until_complete(awaitable)

    def browser(self) -> Browser:
        """A fresh browser (no cookie) on the default client."""
        return Browser(self.client)

    def open(self, cookie: str) -> TokenList:
        """What a cookie holds, as the server would read it now."""
        tokens: TokenList = self.run(self.app.state.endpoints.codec.open(cookie, self.clock()))
        return tokens

    def current_kek(self) -> bytes:
        """The KEK new cookies are sealed with."""
        _, kek = self.run(self.app.state.keyring.current(self.clock()))
        return bytes(kek)

    def close(self) -> None:
        for client in self._clients:
            self.run(client.aclose())
        self.run(close_app(self.app))
        self.loop.close()
