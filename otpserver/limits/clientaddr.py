"""The client's network address for per-address limits: the socket peer, or a trusted proxy's word.

A forwarding header is read only when the socket peer is a proxy the operator listed in
`OTP_TRUSTED_PROXIES`; from anyone else it is ignored, because any client can write one.
The header is then walked from the right, skipping the listed proxies: the first hop that
is not one of them is the client. Everything left of it was written by that client and is
never believed. Only one header is read (`OTP_PROXY_HEADER`), because a proxy that sets one
usually passes the other through from the client untouched.

IPv6 clients are grouped by /64: one subscriber usually holds a whole /64, and counting
single addresses would give them 2^64 allowances.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from otpserver.settings.proxies import Address, ProxyHeader, TrustedProxies

IPV6_GROUP_PREFIX = 64
UNKNOWN = "unknown"
"""The bucket of requests whose address cannot be known: they share one allowance."""


def parse_address(text: str) -> Address | None:
    """An address from a header or socket: `1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `"[::1]"`."""
    value = text.strip().strip('"')
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    value = value.partition("%")[0]  # an IPv6 zone names a local interface, not a client
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def forwarded_hops(headers: Iterable[tuple[bytes, bytes]], header: ProxyHeader) -> list[str]:
    """The hops the header lists, nearest the client first (several header lines joined)."""
    name = header.encode()
    values = [v.decode("latin-1") for k, v in headers if k.lower() == name]
    hops = [hop.strip() for value in values for hop in value.split(",")]
    if header == "x-forwarded-for":
        return hops
    # RFC 7239: `for=192.0.2.60;proto=https, for="[2001:db8::17]:4711"`.
    found = []
    for element in hops:
        pairs = (p.strip().partition("=") for p in element.split(";"))
        found.append(next((v for k, _, v in pairs if k.strip().lower() == "for"), ""))
    return found


def client_address(
    peer: str | None, headers: Iterable[tuple[bytes, bytes]], proxies: TrustedProxies
) -> Address | None:
    """The client as far as it can be known; None for an untrusted peer without an address.

    `peer` is the socket peer's host (`scope["client"][0]`), None on a Unix socket.
    """
    address = parse_address(peer) if peer is not None else None
    if peer is not None and address is None:
        return None
    if not proxies.trusts(address):
        return address
    for hop in reversed(forwarded_hops(headers, proxies.header)):
        forwarded = parse_address(hop)
        if forwarded is None:
            # A proxy we trust wrote something unreadable (`unknown`, an obfuscated name):
            # stop at the last hop we could read rather than believe anything further left.
            break
        address = forwarded
        if not proxies.trusts(forwarded):
            break
    return address


def limit_bucket(address: Address | None) -> str:
    """What per-address limits count: the IPv4 address, the IPv6 /64, or `unknown`."""
    if address is None:
        return UNKNOWN
    if isinstance(address, ipaddress.IPv6Address):
        network = ipaddress.IPv6Network((address, IPV6_GROUP_PREFIX), strict=False)
        return str(network)
    return str(address)
