"""Abuse limits on networks wider than one client address, and on how much of a channel's
budget one network may spend (SECURITY.md item 49)."""

from __future__ import annotations

from otpserver.limits.rules import LimitPolicy, send_counters, verify_counters, wider_networks
from otpserver.otp.credentials import Credential
from otpserver.settings.overrides import LimitOverrides
from tests.conftest import AppFactory
from tests.support.fakes import FakeClock, RecordingSender
from tests.support.peers import Peers
from tests.test_limits_api import assert_rate_limited

SECRET = bytes(32)
EMAIL = Credential("email", "ada@example.com")


def test_an_address_belongs_to_its_wider_networks() -> None:
    """IPv4 addresses widen to their /24, IPv6 /64 groups to their /56 and /48."""
    assert wider_networks("198.51.100.7") == ("198.51.100.0/24",)
    assert wider_networks("2001:db8:1:2::/64") == ("2001:db8:1::/56", "2001:db8:1::/48")
    assert wider_networks("2001:db8:1:ff00::/64")[0] == "2001:db8:1:ff00::/56"
    assert wider_networks("unknown") == ()


def test_a_send_charges_each_wider_network_and_its_share_of_the_budget() -> None:
    """Besides the address, an email send charges the /56, the /48, and the /48's share."""
    kinds = [(c.kind, c.cost) for c in send_counters(LimitPolicy(), SECRET, EMAIL, "2001:db8::/64")]
    assert kinds == [
        ("failures", 0),
        ("failure-cap", 0),
        ("credential-sends", 1),
        ("address-requests", 1),
        ("network-requests", 1),
        ("network-requests", 1),
        ("channel-budget", 1),
        ("network-budget", 1),
    ]


def test_verifies_are_counted_per_wider_network_too() -> None:
    """A verification charges the address and each wider network."""
    kinds = [c.kind for c in verify_counters(LimitPolicy(), SECRET, EMAIL, "198.51.100.7")]
    assert kinds == ["failures", "failure-cap", "address-verifies", "network-verifies"]


def test_a_networks_share_of_a_budget_is_at_least_one() -> None:
    """The share is a percentage of the channel's hourly budget, never below one send."""
    policy = LimitPolicy(channel_sends_per_hour={"email": 5, "*": 5}, network_budget_percent=10)
    (share,) = [
        c
        for c in send_counters(policy, SECRET, EMAIL, "198.51.100.7")
        if c.kind == "network-budget"
    ]
    assert share.limit == 1


async def test_a_home_ipv6_network_cannot_spread_over_its_64s(
    make_app: AppFactory, store: str, peers: Peers, sender: RecordingSender
) -> None:
    """Fresh /64s of one /56 share the /56's allowance; another /48 is untouched."""
    app = make_app(store, limit_overrides=LimitOverrides(numbers={"network_requests": 3}))
    statuses = [
        (await peers.browser(app, f"2001:db8:0:{i}::1").create(f"u{i}@example.com")).status_code
        for i in range(5)
    ]
    assert statuses == [200, 200, 200, 429, 429]
    assert (await peers.browser(app, "2001:db8:1::1").create("v@example.com")).status_code == 200
    assert len(sender.sent) == 4


async def test_an_ipv4_network_shares_one_allowance(
    make_app: AppFactory, store: str, peers: Peers
) -> None:
    """Addresses of one /24 share the /24's allowance."""
    app = make_app(store, limit_overrides=LimitOverrides(numbers={"network_requests": 3}))
    statuses = [
        (await peers.browser(app, f"192.0.2.{i}").create(f"u{i}@example.com")).status_code
        for i in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    assert (await peers.browser(app, "192.0.3.1").create("v@example.com")).status_code == 200


async def test_one_network_cannot_drain_a_channels_budget(
    make_app: AppFactory, store: str, peers: Peers, sender: RecordingSender, clock: FakeClock
) -> None:
    """A /48 spreading over many /56 stops at its share of the hourly budget, and the rest of
    the budget still serves everyone else."""
    app = make_app(
        store,
        limit_overrides=LimitOverrides(
            numbers={"network_budget_percent": 20},
            channel_sends_per_hour={"email": 10},
        ),
    )
    statuses = [
        (await peers.browser(app, f"2001:db8:5:{i}00::1").create(f"u{i}@example.com")).status_code
        for i in range(4)
    ]
    assert statuses[:2] == [200, 200]
    assert_rate_limited(await peers.browser(app, "2001:db8:5:900::1").create("w@example.com"))
    for i in range(8):
        other = peers.browser(app, f"198.51.{i}.9")
        assert (await other.create(f"o{i}@example.com")).status_code == 200
    assert len(sender.sent) == 10
    clock.advance(3600)
    assert (
        await peers.browser(app, "2001:db8:5:a00::1").create("x@example.com")
    ).status_code == 200
