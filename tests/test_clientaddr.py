"""Client addresses: the socket peer, or a trusted proxy's forwarding header, never a spoof."""

from __future__ import annotations

import ipaddress

import pytest

from otpserver.limits.clientaddr import UNKNOWN, client_address, limit_bucket, parse_address
from otpserver.settings.proxies import TrustedProxies, parse_trusted_proxies

PROXY = "10.0.0.5"
TRUSTED = parse_trusted_proxies("10.0.0.0/24, 2001:db8:ffff::/48")
FORWARDED = parse_trusted_proxies("10.0.0.0/24", header="forwarded")


def xff(*values: str) -> list[tuple[bytes, bytes]]:
    return [(b"x-forwarded-for", v.encode()) for v in values]


def resolve(peer: str | None, headers: list[tuple[bytes, bytes]], proxies: TrustedProxies) -> str:
    return limit_bucket(client_address(peer, headers, proxies))


def test_the_socket_peer_is_the_client_without_trusted_proxies() -> None:
    """With no proxies configured the peer address is used as it is."""
    assert resolve("198.51.100.7", [], TrustedProxies()) == "198.51.100.7"


def test_a_spoofed_header_from_an_untrusted_peer_changes_nothing() -> None:
    """An untrusted peer's X-Forwarded-For and Forwarded headers are ignored."""
    headers = [*xff("1.2.3.4"), (b"forwarded", b"for=1.2.3.4")]
    assert resolve("198.51.100.7", headers, TRUSTED) == "198.51.100.7"
    assert resolve("198.51.100.7", headers, FORWARDED) == "198.51.100.7"


def test_a_trusted_proxy_names_the_client() -> None:
    """Behind a listed proxy, the hop it appended is the client."""
    assert resolve(PROXY, xff("203.0.113.9"), TRUSTED) == "203.0.113.9"


def test_the_rightmost_untrusted_hop_wins_over_what_the_client_wrote() -> None:
    """Entries a client put in front of the proxy's own are never believed."""
    headers = xff("1.1.1.1, 2.2.2.2", "203.0.113.9, 10.0.0.7")
    assert resolve(PROXY, headers, TRUSTED) == "203.0.113.9"


def test_a_chain_of_trusted_proxies_is_skipped() -> None:
    """Every listed proxy on the path is skipped; if all are listed, the first hop is used."""
    assert resolve(PROXY, xff("203.0.113.9, 10.0.0.8, 10.0.0.9"), TRUSTED) == "203.0.113.9"
    assert resolve(PROXY, xff("10.0.0.8, 10.0.0.9"), TRUSTED) == "10.0.0.8"


def test_an_unreadable_hop_stops_the_walk() -> None:
    """A garbled hop is not skipped past: the last readable trusted hop is used instead."""
    assert resolve(PROXY, xff("203.0.113.9, unknown"), TRUSTED) == PROXY
    assert resolve(PROXY, xff("203.0.113.9, unknown, 10.0.0.8"), TRUSTED) == "10.0.0.8"


def test_a_trusted_peer_without_a_header_is_the_client() -> None:
    """A listed proxy that sent no header is counted as the client itself."""
    assert resolve(PROXY, [], TRUSTED) == PROXY


def test_rfc_7239_forwarded_is_read_when_configured() -> None:
    """`Forwarded: for=...` elements, quoted IPv6 with ports included, are walked like XFF."""
    headers = [
        (b"forwarded", b'for=1.1.1.1, for="[2001:db8:cafe::17]:4711";proto=https'),
        (b"forwarded", b"for=10.0.0.8;by=10.0.0.5"),
        *xff("9.9.9.9"),
    ]
    assert resolve(PROXY, headers, FORWARDED) == "2001:db8:cafe::/64"


def test_only_the_configured_header_is_read() -> None:
    """With `forwarded` configured, an X-Forwarded-For the proxy passed through is ignored."""
    assert resolve(PROXY, xff("203.0.113.9"), FORWARDED) == PROXY


def test_ipv6_clients_are_grouped_by_64() -> None:
    """Two addresses of one /64 share an allowance; another /64 does not."""
    proxies = TrustedProxies()
    first = resolve("2001:db8:1:2::1", [], proxies)
    assert first == resolve("2001:db8:1:2:ffff::9", [], proxies) == "2001:db8:1:2::/64"
    assert first != resolve("2001:db8:1:3::1", [], proxies)


def test_ipv4_mapped_ipv6_counts_as_ipv4() -> None:
    """A dual-stack socket's `::ffff:a.b.c.d` is the IPv4 client it stands for."""
    assert resolve("::ffff:198.51.100.7", [], TrustedProxies()) == "198.51.100.7"


def test_a_unix_socket_peer_is_trusted_only_when_listed() -> None:
    """Without an address, the header is believed only if `unix` is in the list."""
    assert resolve(None, xff("203.0.113.9"), TrustedProxies()) == UNKNOWN
    assert resolve(None, xff("203.0.113.9"), parse_trusted_proxies("unix")) == "203.0.113.9"


def test_an_unparseable_peer_shares_the_unknown_bucket() -> None:
    """A peer name that is no address (test clients use names) never trusts a header."""
    # Built directly: the settings refuse a list that trusts everyone (`OTP_TRUSTED_PROXIES`).
    everyone = TrustedProxies((ipaddress.ip_network("0.0.0.0/0"),))
    assert resolve("testclient", xff("203.0.113.9"), everyone) == UNKNOWN


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("198.51.100.7", "198.51.100.7"),
        (" 198.51.100.7:8080 ", "198.51.100.7"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ('"[2001:db8::1]"', "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("unknown", None),
        ("_hidden", None),
        ("", None),
        ("1.2.3.4.5", None),
    ],
)
def test_addresses_are_parsed_strictly(text: str, expected: str | None) -> None:
    """Ports, brackets, quotes and zones are removed; anything else unreadable is None."""
    parsed = parse_address(text)
    assert (None if parsed is None else str(parsed)) == expected


def test_trusted_proxy_lists_are_validated() -> None:
    """Addresses, networks and `unix` are accepted; anything else raises ValueError."""
    proxies = parse_trusted_proxies(" 10.0.0.1 ,192.168.0.0/16, ::1, unix ,")
    assert proxies.unix_socket
    assert ipaddress.ip_address("192.168.3.4") in proxies.networks[1]
    with pytest.raises(ValueError, match=r"10\.0\.0\.300"):
        parse_trusted_proxies("10.0.0.300")
