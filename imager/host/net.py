"""This machine's network names and addresses, and which of them are loopback."""

from __future__ import annotations

import ipaddress
import socket

import psutil

WILDCARDS = frozenset({"", "0.0.0.0", "::"})


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name) can only be reached from this machine:
    127.0.0.0/8, ::1 or `localhost`."""
    if host.lower().rstrip(".") in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def hostname() -> str:
    return socket.gethostname()


def addresses() -> list[str]:
    """Every IP address of this machine's interfaces (loopback included), except
    IPv6 link-local ones: they need a zone (fe80::1%eth0) no certificate can name."""
    found: list[str] = []
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            try:
                address = ipaddress.ip_address(entry.address.split("%")[0])
            except ValueError:
                continue
            if not address.is_link_local and str(address) not in found:
                found.append(str(address))
    return found
