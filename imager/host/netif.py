"""A network interface's IPv4 address and network (the boot service's bench interface),
and the neighbours the kernel knows on it (whose MAC address sent from which IPv4)."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

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


ARP_TABLE = Path("/proc/net/arp")


def neighbours(interface: str, table: Path = ARP_TABLE) -> dict[str, str]:
    """IPv4 address -> MAC address (lower case) of the hosts the kernel resolved on
    `interface` (complete entries only)."""
    found: dict[str, str] = {}
    try:
        lines = table.read_text(encoding="ascii", errors="replace").splitlines()[1:]
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        # IP address, HW type, Flags (0x2: complete), HW address, Mask, Device
        if len(fields) == 6 and fields[5] == interface and int(fields[2], 16) & 0x2:
            found[fields[0]] = fields[3].lower()
    return found
