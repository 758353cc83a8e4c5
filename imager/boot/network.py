"""The live system's network: the wired interface that booted (or every wired one
with a link), an address by DHCP from the network's router.

busybox's udhcpc runs in the foreground for each interface tried, with the live
system's own script (`imager.boot.initscript.udhcpc_script`): it configures the
interface and writes <RUN>/net/<interface>.lease, which `bring_up` waits for. The
client keeps running after the lease, to renew it. On a network with the
station's proxy-DHCP, the router gives the address: the proxy answers only PXE
clients.

`bring_up` never gives up: it reports each failure once (no interface, no link,
no address) through `on_failure`, and goes on trying, so that plugging the cable
in lets the laptop continue by itself."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from imager.boot import stages
from imager.host.run import run

ARPHRD_ETHER = "1"
LINK_SECONDS = 15.0           # wait for a link after setting the interfaces up
DHCP_SECONDS = 45.0           # wait for an address before saying so
INTERFACE_SECONDS = 20.0      # wait for the booted MAC's driver to load


@dataclass(frozen=True)
class Interface:
    name: str
    mac: str


@dataclass(frozen=True)
class Lease:
    """An address the router gave: `ip` with its prefix, e.g. 10.0.2.15/24."""

    iface: str
    mac: str
    ip: str
    router: str | None
    dns: tuple[str, ...]
    server: str | None


def wired_interfaces(sys_root: Path = Path("/sys")) -> list[Interface]:
    """The machine's wired Ethernet interfaces: a device behind them (not virtual),
    no wireless."""
    found = []
    for path in sorted((sys_root / "class/net").iterdir()):
        if not (path / "device").exists() or (path / "wireless").exists() \
                or (path / "phy80211").exists():
            continue
        if _read(path / "type") != ARPHRD_ETHER:
            continue
        found.append(Interface(path.name, _read(path / "address").lower()))
    return found


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def has_link(name: str, sys_root: Path = Path("/sys")) -> bool:
    return _read(sys_root / "class/net" / name / "carrier") == "1"


def parse_lease(iface: str, mac: str, text: str) -> Lease | None:
    """The lease file the DHCP script wrote (key=value lines); None if it has no ip."""
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    ip = values.get("ip")
    if not ip:
        return None
    mask = values.get("mask", "")
    prefix = _prefix(mask) if "." in mask else mask
    return Lease(iface, mac, f"{ip}/{prefix}" if prefix else ip, values.get("router") or None,
                 tuple(values.get("dns", "").split()), values.get("server") or None)


def _prefix(netmask: str) -> str:
    try:
        return str(sum(bin(int(part)).count("1") for part in netmask.split(".")))
    except ValueError:
        return ""


@dataclass
class Network:
    """One bring-up of the network; `close()` stops the DHCP clients it started."""

    run_dir: Path
    script: str
    sys_root: Path = Path("/sys")
    clients: dict[str, subprocess.Popen[bytes]] | None = None

    def bring_up(self, mac: str | None, *,
                 on_failure: Callable[[str, dict[str, str]], None]) -> Lease:
        """An address on the interface with `mac` (None: any wired one with a link).
        Each failure is reported once by `on_failure(reason, fields)`; it goes on
        trying until it has a lease."""
        lease = self._up(mac, on_failure, give_up=False)
        assert lease is not None
        return lease

    def try_up(self, mac: str | None, *,
               on_failure: Callable[[str, dict[str, str]], None]) -> Lease | None:
        """As `bring_up`, but None at the first failure, reported: no interface after
        INTERFACE_SECONDS, no link after LINK_SECONDS, no address after LINK_SECONDS
        + DHCP_SECONDS (a stick's live system then works offline)."""
        return self._up(mac, on_failure, give_up=True)

    def _up(self, mac: str | None, on_failure: Callable[[str, dict[str, str]], None], *,
            give_up: bool) -> Lease | None:
        self.clients = self.clients or {}
        told: set[str] = set()

        def failed(reason: str, **fields: str) -> bool:
            """Report `reason` once; whether to give up now."""
            if reason not in told:
                told.add(reason)
                on_failure(reason, fields)
            return give_up

        start = time.monotonic()
        while True:
            candidates = self._candidates(mac)
            waited = time.monotonic() - start
            if not candidates:
                if waited >= INTERFACE_SECONDS and failed(stages.NO_INTERFACE, mac=mac or "-"):
                    return None
                time.sleep(1.0)
                continue
            for iface in candidates:
                run(["ip", "link", "set", "dev", iface.name, "up"], check=False)
            linked = [i for i in candidates if has_link(i.name, self.sys_root)]
            if not linked:
                if waited >= LINK_SECONDS and failed(
                        stages.NO_CARRIER, iface=",".join(i.name for i in candidates)):
                    return None
                time.sleep(0.5)
                continue
            for iface in linked:
                self._dhcp(iface)
            lease = self._lease(linked)
            if lease is not None:
                self._keep_only(lease.iface)
                return lease
            if waited >= LINK_SECONDS + DHCP_SECONDS and failed(
                    stages.NO_DHCP, iface=",".join(i.name for i in linked)):
                return None
            time.sleep(0.5)

    def _candidates(self, mac: str | None) -> list[Interface]:
        wired = wired_interfaces(self.sys_root)
        return [i for i in wired if i.mac == mac] if mac else wired

    def _dhcp(self, iface: Interface) -> None:
        """Start udhcpc on `iface` once (it retries by itself)."""
        assert self.clients is not None
        if iface.name in self.clients and self.clients[iface.name].poll() is None:
            return
        self.clients[iface.name] = subprocess.Popen(
            ["busybox", "udhcpc", "-f", "-i", iface.name, "-s", self.script, "-t", "5",
             "-T", "2", "-A", "3", "-x", "hostname:imager-live"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _lease(self, linked: list[Interface]) -> Lease | None:
        for iface in linked:
            path = self.run_dir / "net" / f"{iface.name}.lease"
            if path.is_file():
                lease = parse_lease(iface.name, iface.mac, path.read_text())
                if lease is not None:
                    return lease
        return None

    def _keep_only(self, name: str) -> None:
        """Stop the DHCP clients of the interfaces not chosen."""
        assert self.clients is not None
        for other, proc in list(self.clients.items()):
            if other != name:
                proc.terminate()
                del self.clients[other]

    def close(self) -> None:
        for proc in (self.clients or {}).values():
            proc.terminate()
