"""Processes on hosts of their own: network namespaces joined to this one by veth pairs.

``with hosts(2) as [a, b]:`` makes two network namespaces, each with one
link to this (the root) namespace: the namespace's side has ``a.address``,
this side ``a.gateway``, on a /30 of its own. A command run through
``a.command(argv)`` lives in that namespace (``ip netns exec``) and in a UTS
namespace of its own whose host name is ``a.name`` (``unshare --uts``), so
that rawbg sees another host: another address on the wire, another
``gethostname()``. Its pid stays the one the test started (both tools
``exec``), so the test signals it directly.

It needs root and iproute2 (CI runs as root); `hosts` raises `NoNamespaces`
saying why otherwise. The namespaces and links are removed on exit.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass


class NoNamespaces(RuntimeError):
    """Raised when network namespaces cannot be made here (not root, no ``ip``)."""


@dataclass(frozen=True)
class Host:
    """One network namespace, as a host: its name, its address, and this side's."""

    name: str
    namespace: str
    address: str  # in the namespace
    gateway: str  # this namespace's end of the link

    def command(self, argv: list[str]) -> list[str]:
        """`argv`, run in this namespace and under this host name."""
        return [
            "ip",
            "netns",
            "exec",
            self.namespace,
            "unshare",
            "--uts",
            "sh",
            "-c",
            'hostname "$0" && exec "$@"',
            self.name,
            *argv,
        ]


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NoNamespaces(f"ip {' '.join(args)} failed: {done.stderr.strip()}")


def _network(index: int) -> ipaddress.IPv4Network:
    """A /30 in 10.200.0.0/14 of this process's own, so that parallel runs do not meet."""
    block = (os.getpid() % 4096) * 16 + index
    return ipaddress.IPv4Network((int(ipaddress.IPv4Address("10.200.0.0")) + block * 4, 30))


@contextlib.contextmanager
def hosts(count: int) -> Iterator[list[Host]]:
    """`count` namespaces, each a host reachable from here; removed on exit."""
    if os.geteuid() != 0:
        raise NoNamespaces("network namespaces need root")
    made: list[Host] = []
    try:
        for index in range(count):
            network = _network(index)
            gateway, address = (str(ip) for ip in list(network.hosts())[:2])
            tag = f"{os.getpid() % 100000}x{index}"
            host = Host(f"node{index}-{tag}", f"rawbg{tag}", address, gateway)
            _ip("netns", "add", host.namespace)
            made.append(host)
            outside, inside = f"rb{tag}o", f"rb{tag}i"
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", host.namespace)
            _ip("addr", "add", f"{gateway}/30", "dev", outside)
            _ip("link", "set", outside, "up")
            _ip("-n", host.namespace, "addr", "add", f"{address}/30", "dev", inside)
            _ip("-n", host.namespace, "link", "set", inside, "up")
            _ip("-n", host.namespace, "link", "set", "lo", "up")
        yield made
    finally:
        for host in made:
            # deleting the namespace deletes its end of the pair, and so the pair
            subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True, check=False)


def covering(hosts: list[Host]) -> str:
    """The smallest network (CIDR) that holds every host's address."""
    networks = [ipaddress.IPv4Network(f"{host.address}/30", strict=False) for host in hosts]
    first = min(int(n.network_address) for n in networks)
    last = max(int(n.broadcast_address) for n in networks)
    prefix = 32 - (last - first).bit_length()
    return str(ipaddress.IPv4Network((first, prefix), strict=False))
