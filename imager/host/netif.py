"""A network interface's IPv4 address and network (the boot service's bench interface)."""

from __future__ import annotations

import ipaddress
import socket

import psutil

from imager.errors import UsageError


def interface_ipv4(name: str) -> ipaddress.IPv4Interface:
    """The first IPv4 address of interface `name`, with its network
    (UsageError naming the interface and the fix when it has none)."""
    found = psutil.net_if_addrs()
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise UsageError(f"interface réseau {name!r} introuvable / no network interface "
                         f"{name!r} (interfaces: {known}): give the bench interface")
    for entry in found[name]:
        if entry.family == socket.AF_INET and entry.netmask:
            return ipaddress.IPv4Interface(f"{entry.address}/{entry.netmask}")
    raise UsageError(f"l'interface {name!r} n'a pas d'adresse IPv4 / interface {name!r} has "
                     "no IPv4 address: give it one on the bench network (ip addr add "
                     f"10.66.0.2/24 dev {name}), or let the network's router give it one")
