"""Behind a reverse proxy: who the client is, from headers only a trusted peer may set.

A proxy (nginx, a load balancer) connects to rawbg itself, so the peer address
of the socket is the proxy's. It says who the real client is in
``X-Forwarded-For`` (a comma-separated list: each proxy appends the address it
received the request from) and which scheme the client used in
``X-Forwarded-Proto``. Any client can send those headers, so they count only
when the peer is in ``--forwarded-allow-ips`` (uvicorn's flag and meaning):

* the client is the right-most address of ``X-Forwarded-For`` that is *not* a
  trusted proxy (a chain of trusted proxies is walked back to the first hop
  we do not trust); if every hop is trusted, the left-most one;
* the scheme is ``X-Forwarded-Proto`` when it is ``http`` or ``https``.

`TrustedProxies` is plain logic, tested without a socket; the connection
applies it once per request (`forwarded`), and only when the peer is trusted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from rawbg.requests import Address

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = frozenset({"http", "https"})


class TrustedProxies:
    """The peers whose ``X-Forwarded-*`` headers are believed.

    Built from ``--forwarded-allow-ips``: a comma-separated list of addresses
    (``127.0.0.1``), networks (``10.0.0.0/8``), or ``*`` for any peer (also a
    peer on a Unix socket, which has no address).
    """

    __slots__ = ("_addresses", "_networks", "trust_all")

    def __init__(self, allowed: str | Iterable[str]) -> None:
        items = allowed.split(",") if isinstance(allowed, str) else list(allowed)
        entries = [item.strip() for item in items if item.strip()]
        self.trust_all = "*" in entries
        self._addresses: set[IPAddress] = set()
        self._networks: list[IPNetwork] = []
        for entry in entries:
            if entry == "*":
                continue
            try:
                if "/" in entry:
                    self._networks.append(ipaddress.ip_network(entry, strict=False))
                else:
                    self._addresses.add(ipaddress.ip_address(entry))
            except ValueError:
                raise ValueError(
                    f"forwarded_allow_ips: {entry!r} is not an IP address, a network or '*'"
                ) from None

    def __contains__(self, host: object) -> bool:
        if self.trust_all:
            return True
        if not isinstance(host, str) or not host:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if address in self._addresses:
            return True
        return any(address in network for network in self._networks)

    def trusts_peer(self, peer: Address | None) -> bool:
        """Whether a connection from `peer` (None: a Unix socket) may set the headers."""
        return self.trust_all if peer is None else peer.host in self

    def client_from(self, forwarded_for: str) -> Address | None:
        """The client named by an ``X-Forwarded-For`` value; None if it names nobody."""
        hops = [hop.strip() for hop in forwarded_for.split(",")]
        hops = [hop for hop in hops if hop]
        if not hops:
            return None
        if not self.trust_all:
            for hop in reversed(hops):
                address = parse_hop(hop)
                if address.host not in self:
                    return address
        return parse_hop(hops[0])


def parse_hop(hop: str) -> Address:
    """``1.2.3.4``, ``1.2.3.4:5678``, ``::1``, ``[::1]:5678`` -> (host, port or 0)."""
    if hop.startswith("["):
        host, _, rest = hop[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return Address(host, int(port) if port.isdigit() else 0)
    if hop.count(":") == 1:
        host, _, port = hop.partition(":")
        return Address(host, int(port) if port.isdigit() else 0)
    return Address(hop, 0)


def forwarded(
    trusted: TrustedProxies,
    headers: Iterable[tuple[bytes, bytes]],
    client: Address | None,
    scheme: str = "http",
) -> tuple[Address | None, str]:
    """(client, scheme) of a request that came from a trusted peer.

    `headers` have lower-case names (as h11 gives them). Several
    ``X-Forwarded-For`` lines are one list, in order (RFC 9110 5.3).
    `client` and `scheme` are the connection's, kept when no header names others.
    """
    forwarded_for: list[str] = []
    for name, value in headers:
        if name == b"x-forwarded-for":
            forwarded_for.append(value.decode("latin-1"))
        elif name == b"x-forwarded-proto":
            proto = value.decode("latin-1").strip().lower()
            if proto in SCHEMES:
                scheme = proto
    if forwarded_for:
        named = trusted.client_from(",".join(forwarded_for))
        if named is not None:
            client = named
    return client, scheme
