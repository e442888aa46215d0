"""What the limits cost per request: one store call per decision, and on Redis no round trip
of their own: each charge rides in the script that changes the cookie's ID."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from otpserver.hooks import Hooks
from otpserver.settings.environment import Settings
from otpserver.stores.base import CounterStore
from otpserver.stores.connections import RedisClient
from otpserver.stores.counters import Counter, Decision
from tests.conftest import AppFactory
from tests.support.api import Browser, wrong
from tests.support.fakes import AllowAll, RecordingSender
from tests.support.hooks import HOOKS
from tests.support.peers import Peers

ROUTES = ("create", "switch", "resend", "verify-wrong", "verify-right")


class Counting:
    """Wraps a counter store and counts the calls each request makes."""

    def __init__(self, inner: CounterStore) -> None:
        self.inner = inner
        self.calls = 0

    async def hit(self, counters: Sequence[Counter], now_ms: int) -> Decision:
        self.calls += 1
        return await self.inner.hit(counters, now_ms)

    async def reset(self, keys: Sequence[bytes]) -> None:
        self.calls += 1
        await self.inner.reset(keys)

    async def aclose(self) -> None:
        await self.inner.aclose()


def with_counter_store(make: Callable[[Settings], Any]) -> Hooks:
    return dataclasses.replace(HOOKS, make_counter_store=make)


async def per_route(
    browser: Browser, sender: RecordingSender, measure: Callable[[Awaitable[Any]], Awaitable[int]]
) -> dict[str, int]:
    """The measured cost of each kind of request, in one session of one browser."""
    costs = {"create": await measure(browser.create("ada@example.com"))}
    await browser.create("bob@example.com")
    costs["switch"] = await measure(browser.create("ada@example.com"))
    costs["resend"] = await measure(browser.resend())
    code = sender.last_code
    costs["verify-wrong"] = await measure(browser.verify(wrong(code)))
    costs["verify-right"] = await measure(browser.verify(code))
    return costs


async def test_each_decision_is_one_store_call(
    make_app: AppFactory, store: str, peers: Peers, sender: RecordingSender
) -> None:
    """One call per request; a correct code adds the reset of its failure count."""
    counting: list[Counting] = []

    def make(settings: Settings) -> CounterStore:
        counting.append(Counting(HOOKS.make_counter_store(settings)))
        return counting[0]

    app = make_app(
        store, hooks=with_counter_store(make), policy_overrides={"resend_cooldown_seconds": 0}
    )

    async def measure(request: Awaitable[Any]) -> int:
        before = counting[0].calls
        await request
        return counting[0].calls - before

    costs = await per_route(peers.browser(app, "198.51.100.7"), sender, measure)
    assert costs == {"create": 1, "switch": 1, "resend": 1, "verify-wrong": 1, "verify-right": 2}


async def test_limits_add_no_redis_round_trip_to_any_request(
    make_app: AppFactory, peers: Peers, sender: RecordingSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis commands sent with limits minus without: none, as each charge shares its
    request's ID script, the failure count's reset after a correct code included; so one
    round trip per request."""
    # Counted at the client, because Redis's own statistics also count what scripts run.
    sent = 0
    execute: Callable[..., Awaitable[Any]] = RedisClient.execute

    async def counted(self: RedisClient, *command: Any) -> Any:
        nonlocal sent
        sent += 1
        return await execute(self, *command)

    monkeypatch.setattr(RedisClient, "execute", counted)
    # Consuming and charging steps send their script and the store sequence's INCR
    # together: one write, one round trip.
    pipeline: Callable[..., Awaitable[Any]] = RedisClient.pipeline

    async def counted_pipeline(self: RedisClient, commands: Any) -> Any:
        nonlocal sent
        sent += 1
        return await pipeline(self, commands)

    monkeypatch.setattr(RedisClient, "pipeline", counted_pipeline)

    async def measure(request: Awaitable[Any]) -> int:
        before = sent
        await request
        return sent - before

    totals = {}
    for name, hooks in (("limits", HOOKS), ("none", with_counter_store(lambda s: AllowAll()))):
        app = make_app("redis", hooks=hooks, policy_overrides={"resend_cooldown_seconds": 0})
        warm = peers.browser(app, "198.51.100.7")
        await warm.create("warm@example.com")
        await warm.verify(sender.last_code)
        totals[name] = await per_route(peers.browser(app, "198.51.100.8"), sender, measure)
    added = {route: totals["limits"][route] - totals["none"][route] for route in ROUTES}
    assert added == {"create": 0, "switch": 0, "resend": 0, "verify-wrong": 0, "verify-right": 0}
    assert max(totals["limits"].values()) == 1
    # The core's own trips, for the record: one per request.
    assert set(totals["none"].values()) == {1}
