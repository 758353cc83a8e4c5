"""dnsmasq for the boot service: proxy-DHCP and TFTP on the bench interface only.

`config()` is the whole configuration as text (tested as text); `Dnsmasq` runs
it as a child process (imager.host.child).

Safe by default:
- **proxy-DHCP only** (`dhcp-range=<network>,proxy`, `port=0`: no DNS): the
  network's own router keeps giving the addresses; dnsmasq only tells PXE
  clients what to boot. It becomes a DHCP server only when told so with
  `dangerous_dhcp_range` (a bench network that has no router at all);
- on the bench interface only (`interface=`, `bind-interfaces`, never `lo`);
- the PXE services that work in proxy mode (boot facts, 2026-12-06): one
  `pxe-service` per client type and tag, a file name and nothing else:
  BIOS without iPXE -> `undionly.0` (iPXE); iPXE (option 175) -> `boot.ipxe`;
  UEFI -> `shimx64.efi` (shim then fetches `grubx64.efi` beside it); UEFI NICs
  listed by a technician (`ipxe_macs`, for a NIC GRUB cannot drive) ->
  `snponly.efi`, then `boot.ipxe` once it is iPXE that asks.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from imager.host.child import Child

# TFTP names (dnsmasq adds ".0" to a BIOS service name without extension).
UNDIONLY = "undionly.0"
IPXE_SCRIPT = "boot.ipxe"
SHIM = "shimx64.efi"
GRUB = "grubx64.efi"
SNPONLY = "snponly.efi"
GRUB_CFG = "grub/grub.cfg"
UEFI_TYPES = ("x86-64_EFI", "BC_EFI")      # client arch 9 and 7 (OVMF says 7)
_IFACE = re.compile(r"[A-Za-z0-9_.-]{1,15}")
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


@dataclass(frozen=True)
class ProxyConfig:
    """What dnsmasq needs: the bench interface and its network, the TFTP folder,
    the MACs that get iPXE under UEFI, and (only when a person says so) the
    addresses it may lease as a real DHCP server."""

    interface: str
    network: ipaddress.IPv4Network
    tftp_root: Path
    ipxe_macs: tuple[str, ...] = ()
    dangerous_dhcp_range: tuple[ipaddress.IPv4Address, ipaddress.IPv4Address] | None = None
    lease_file: Path | None = None

    def __post_init__(self) -> None:
        if not _IFACE.fullmatch(self.interface) or self.interface == "lo":
            raise ValueError(f"bench interface {self.interface!r}: give a network interface "
                             "name (not lo)")
        for mac in self.ipxe_macs:
            if not _MAC.fullmatch(mac):
                raise ValueError(f"{mac!r} is not a MAC address (52:54:00:12:34:56)")
        if self.dangerous_dhcp_range is not None:
            start, end = self.dangerous_dhcp_range
            if start not in self.network or end not in self.network or end < start:
                raise ValueError(f"DHCP range {start}-{end} is not inside {self.network}")


def config(cfg: ProxyConfig) -> str:
    """The dnsmasq configuration file."""
    return "\n".join([
        "# imager boot service (generated at each start: do not edit)",
        "port=0", "no-resolv", "no-hosts", "user=nobody", "group=nogroup",
        f"interface={cfg.interface}", "except-interface=lo", "bind-interfaces",
        "log-dhcp", "log-facility=-",
        *_dhcp_lines(cfg),
        "enable-tftp", f"tftp-root={cfg.tftp_root}",
        "dhcp-match=set:ipxe,175",
        *(f"dhcp-mac=set:snp,{mac}" for mac in cfg.ipxe_macs),
        "tag-if=set:uefi-shim,tag:!snp",
        "tag-if=set:uefi-snp,tag:snp,tag:!ipxe",
        "tag-if=set:uefi-snp-ipxe,tag:snp,tag:ipxe",
        *_services(),
        "",
    ])


def _dhcp_lines(cfg: ProxyConfig) -> list[str]:
    if cfg.dangerous_dhcp_range is None:
        return ["# proxy-DHCP: the network's router gives the addresses, never this one",
                f"dhcp-range={cfg.network.network_address},proxy,{cfg.network.netmask}"]
    start, end = cfg.dangerous_dhcp_range
    lines = ["# DHCP SERVER (asked for): this station gives addresses on the bench network",
             f"dhcp-range={start},{end},{cfg.network.netmask},1h"]
    return lines + ([f"dhcp-leasefile={cfg.lease_file}"] if cfg.lease_file else [])


def _services() -> list[str]:
    base = UNDIONLY.removesuffix(".0")
    lines = [f'pxe-service=tag:!ipxe,x86PC,"Station imager (BIOS)",{base}',
             f'pxe-service=tag:ipxe,x86PC,"Station imager (iPXE)",{IPXE_SCRIPT}']
    for arch in UEFI_TYPES:
        lines += [f'pxe-service=tag:uefi-shim,{arch},"Station imager (UEFI)",{SHIM}',
                  f'pxe-service=tag:uefi-snp,{arch},"Station imager (UEFI iPXE)",{SNPONLY}',
                  f'pxe-service=tag:uefi-snp-ipxe,{arch},"Station imager (iPXE)",'
                  f"{IPXE_SCRIPT}"]
    return lines


def argv(conf_file: Path) -> list[str]:
    return ["dnsmasq", "--keep-in-foreground", f"--conf-file={conf_file}", "--pid-file="]


class Dnsmasq:
    """dnsmasq with `cfg`, its configuration and log in `run_dir`."""

    def __init__(self, cfg: ProxyConfig, run_dir: Path) -> None:
        self.cfg = cfg
        self.conf_file = run_dir / "dnsmasq.conf"
        self.child = Child(argv(self.conf_file), log=run_dir / "dnsmasq.log", name="dnsmasq")

    def start(self) -> None:
        self.conf_file.write_text(config(self.cfg), encoding="utf-8")
        self.child.start(settle=0.5)

    def stop(self) -> None:
        self.child.stop()


# -- what its log says of the laptops (imager.boot.watch reads it) ------------------

_PXE = re.compile(r"dnsmasq-dhcp\[\d+\]: (\d+) PXE\(\S+\) (?:\S+ )?"
                  r"([0-9a-f]{2}(?::[0-9a-f]{2}){5}) ")
_BOOTFILE = re.compile(r"dnsmasq-dhcp\[\d+\]: (\d+) bootfile name: (\S+)")
_ARCH = re.compile(r"dnsmasq-dhcp\[\d+\]: (\d+) vendor class: PXEClient:Arch:(\d{5})")
_SENT = re.compile(r"dnsmasq-tftp\[\d+\]: sent (\S+) to (\d+\.\d+\.\d+\.\d+)$")


@dataclass(frozen=True)
class Offered:
    """The proxy-DHCP told the laptop `mac` to fetch `loader` (a TFTP name); its
    firmware as its request said (client architecture 0: BIOS, else UEFI)."""

    mac: str
    loader: str
    firmware: str | None = None


@dataclass(frozen=True)
class Sent:
    """TFTP sent `name` (relative to the TFTP root) in full to `address`."""

    name: str
    address: str


class LogReader:
    """dnsmasq's log lines (`log-dhcp`) -> Offered and Sent. A PXE answer spans
    several lines tied by the DHCP transaction id: the MAC on one, the boot file
    on another."""

    def __init__(self, tftp_root: Path) -> None:
        self.tftp_root = str(tftp_root).rstrip("/") + "/"
        self._macs: dict[str, str] = {}          # transaction id -> MAC
        self._arch: dict[str, str] = {}          # transaction id -> bios | uefi
        self._firmware: dict[str, str] = {}      # MAC -> bios | uefi

    def read(self, line: str) -> Offered | Sent | None:
        line = line.rstrip()
        if (sent := _SENT.search(line)) is not None:
            path = sent.group(1)
            name = path[len(self.tftp_root):] if path.startswith(self.tftp_root) else path
            return Sent(name, sent.group(2))
        if (arch := _ARCH.search(line)) is not None:
            self._forget()
            self._arch[arch.group(1)] = "bios" if int(arch.group(2)) == 0 else "uefi"
        elif (pxe := _PXE.search(line)) is not None:
            self._forget()
            xid, mac = pxe.groups()
            self._macs[xid] = mac
            if xid in self._arch:
                self._firmware[mac] = self._arch[xid]
        elif (bootfile := _BOOTFILE.search(line)) is not None:
            # The answer on port 4011 may come in a transaction of its own (id 0, no
            # architecture): the MAC's last request said it.
            mac = self._macs.pop(bootfile.group(1), None)
            return Offered(mac, bootfile.group(2), self._firmware.get(mac)) if mac else None
        return None

    def _forget(self) -> None:
        """Transactions never answered are forgotten past a thousand."""
        for seen in (self._macs, self._arch, self._firmware):
            if len(seen) > 1000:
                seen.clear()
