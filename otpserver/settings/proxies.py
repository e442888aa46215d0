"""Trusted proxies: which socket peers may tell the client's address, and in which header."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


ProxyHeader = Literal["x-forwarded-for", "forwarded"]


PROXY_HEADERS: tuple[ProxyHeader, ...] = ("x-forwarded-for", "forwarded")


UNIX_SOCKET = "unix"
"""The `OTP_TRUSTED_PROXIES` entry trusting a peer on a Unix socket (which has no address)."""


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """The proxies whose forwarding header is believed, and which header they set."""

    networks: tuple[Network, ...] = ()
    unix_socket: bool = False
    header: ProxyHeader = "x-forwarded-for"

    def trusts(self, address: Address | None) -> bool:
        """True for a listed proxy (None stands for a Unix-socket peer)."""
        if address is None:
            return self.unix_socket
        return any(address in network for network in self.networks)


def parse_trusted_proxies(text: str, header: ProxyHeader = "x-forwarded-for") -> TrustedProxies:
    """Read a comma list of addresses, CIDR networks and `unix`; raise ValueError on a bad one."""
    networks: list[Network] = []
    unix_socket = False
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        if entry.lower() == UNIX_SOCKET:
            unix_socket = True
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"not an address or CIDR network: {entry!r}") from None
    if trusts_everyone(networks):
        # Every client could then write its own address into the forwarding header.
        raise ValueError("the list covers every address, so any client would be believed")
    return TrustedProxies(tuple(networks), unix_socket, header)


def trusts_everyone(networks: list[Network]) -> bool:
    """True when the networks together cover all of IPv4 or all of IPv6."""
    v4 = [n for n in networks if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in networks if isinstance(n, ipaddress.IPv6Network)]
    return any(n.prefixlen == 0 for n in ipaddress.collapse_addresses(v4)) or any(
        n.prefixlen == 0 for n in ipaddress.collapse_addresses(v6)
    )
