"""The boot service: dnsmasq (proxy-DHCP + TFTP) and the plain HTTP listener, on
the bench interface only.

    service = BootService(BootSettings(interface="eth1", files=BootFiles.in_folder(d)),
                          registry, station_ca_pem=pem)
    with service:                        # start() ... stop()
        ...

At start it writes the TFTP folder (shim, GRUB, iPXE, `grub/grub.cfg`,
`boot.ipxe`: no secret, readable by dnsmasq's unprivileged user) in its run
folder, makes `station.img` (a newc cpio holding /etc/imager/station-ca.pem,
the CA the live system's agent pins), starts the watch that follows each
laptop's boot for the board (imager.boot.watch), listens for HTTP on the
interface's address and starts dnsmasq. stop() ends them and is safe to call
twice.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from imager.boot import dnsmasq, menus
from imager.boot.cpio import Entry, newc
from imager.boot.files import BootFiles
from imager.boot.http import BootContent, BootHttp
from imager.boot.watch import PROBLEMS, BootWatch
from imager.errors import ImagerError, UsageError
from imager.host.netif import interface_ipv4
from imager.registry import boot as decisions
from imager.registry.boot import BootDecision
from imager.store.db import Registry

log = logging.getLogger("imager.boot")
HTTP_PORT = 8471
STATION_PORT = 8470
RUN_ROOT = Path("/run/imager-boot")
CA_PATH = "etc/imager/station-ca.pem"


@dataclass(frozen=True)
class BootSettings:
    """The bench interface; the station URL the live system's agent enrols with
    (default https://<interface address>:8470); the HTTP port; the proxy-DHCP
    network (default: the interface's); the boot files; the run folder (default
    /run/imager-boot/<interface>); MACs that get iPXE under UEFI; and, only when
    a person asks for it, the addresses to lease as a real DHCP server; and how
    long a boot may stay at one stage before the board says where it stopped
    (default: per stage, imager.boot.watch.PROBLEMS)."""

    interface: str
    files: BootFiles
    station_url: str | None = None
    http_port: int = HTTP_PORT
    proxy_network: ipaddress.IPv4Network | None = None
    run_dir: Path | None = None
    ipxe_macs: tuple[str, ...] = ()
    dangerous_dhcp_range: tuple[ipaddress.IPv4Address, ipaddress.IPv4Address] | None = None
    stall_seconds: float | None = None


def station_img(ca_pem: bytes) -> bytes:
    """The third initrd: the station's TLS CA where the live system's agent reads it."""
    if b"-----BEGIN CERTIFICATE-----" not in ca_pem:
        raise UsageError("the station's CA is not a PEM certificate: export it with "
                         "`imager keys tls-ca FILE`")
    return newc([Entry.dir("etc/imager"), Entry.file(CA_PATH, ca_pem)])


def write_tftp(root: Path, files: BootFiles, server: menus.BootServer) -> None:
    """The TFTP folder: loaders under the names dnsmasq's PXE services give, and
    the two entry scripts that ask the station over HTTP."""
    _reachable_by_dnsmasq(root)
    if root.exists():
        shutil.rmtree(root)
    (root / "grub").mkdir(parents=True, mode=0o755)
    os.chmod(root, 0o755)
    os.chmod(root / "grub", 0o755)
    for source, name in ((files.shim, dnsmasq.SHIM), (files.grub, dnsmasq.GRUB),
                         (files.undionly, dnsmasq.UNDIONLY), (files.snponly, dnsmasq.SNPONLY)):
        shutil.copyfile(source, root / name)
    (root / dnsmasq.GRUB_CFG).write_text(menus.grub_entry(server), encoding="ascii")
    (root / dnsmasq.IPXE_SCRIPT).write_text(menus.ipxe_entry(server), encoding="ascii")
    for path in root.rglob("*"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


def _reachable_by_dnsmasq(root: Path) -> None:
    """UsageError when a folder above the TFTP root is closed to other users:
    dnsmasq serves TFTP as `nobody` and could not read the loaders."""
    for folder in root.resolve().parents:
        if folder.exists() and not os.stat(folder).st_mode & 0o001:
            raise UsageError(f"le dossier {folder} est fermé aux autres utilisateurs : dnsmasq "
                             f"(utilisateur nobody) ne pourrait pas lire {root} / {folder} is "
                             "closed to other users: dnsmasq (user nobody) could not read the "
                             "TFTP folder; choose a --run-dir under /run or /srv")


class BootService:
    """dnsmasq + the HTTP listener for one bench interface."""

    def __init__(self, settings: BootSettings, registry: Registry, *,
                 station_ca_pem: bytes) -> None:
        self.settings = settings
        self.registry = registry
        self.station_ca_pem = station_ca_pem
        self.server: menus.BootServer | None = None
        self.run_dir = settings.run_dir or RUN_ROOT / settings.interface
        self._http: BootHttp | None = None
        self._dnsmasq: dnsmasq.Dnsmasq | None = None
        self._watch: BootWatch | None = None

    def __enter__(self) -> BootService:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        if os.geteuid() != 0:
            raise UsageError("le service de démarrage écoute les ports DHCP (67) et TFTP (69) : "
                             "lancez-le en root / the boot service binds the DHCP (67) and "
                             "TFTP (69) ports: run it as root")
        files = self.settings.files.check()
        address = interface_ipv4(self.settings.interface)
        try:
            self.server = menus.BootServer(
                str(address.ip), self.settings.http_port,
                self.settings.station_url or f"https://{address.ip}:{STATION_PORT}")
        except ValueError as exc:
            raise UsageError(f"{exc} (--station-url: the HTTPS address the live system's "
                             "agent reaches the station at, e.g. https://10.66.0.2:8470)"
                             ) from exc
        self.run_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.run_dir, 0o755)
        write_tftp(self.run_dir / "tftp", files, self.server)
        stall = self.settings.stall_seconds
        self._watch = BootWatch(
            self.registry, log_file=self.run_dir / "dnsmasq.log",
            tftp_root=self.run_dir / "tftp", interface=self.settings.interface,
            stalls=None if stall is None else dict.fromkeys(PROBLEMS, stall))
        content = BootContent(self.server, self._decide, {
            "vmlinuz": files.vmlinuz, "live.img": files.live, "imager.img": files.imager,
            "station.img": station_img(self.station_ca_pem)}, self._watch)
        try:
            self._watch.start()
            self._start_http(content, str(address.ip))
            self._dnsmasq = dnsmasq.Dnsmasq(self._proxy_config(address), self.run_dir)
            self._dnsmasq.start()
        except BaseException:
            self.stop()
            raise
        log.info("boot service on %s (%s): proxy-DHCP %s, HTTP %s, station %s",
                 self.settings.interface, address.ip, self._proxy_config(address).network,
                 self.server.http, self.server.station_url)

    def _start_http(self, content: BootContent, address: str) -> None:
        try:
            self._http = BootHttp(content, address=address, port=self.settings.http_port)
            self._http.start()
        except OSError as exc:
            raise ImagerError(f"le service de démarrage ne peut pas écouter sur / the boot "
                              f"service cannot listen on {address}:{self.settings.http_port} "
                              f"({exc.strerror}): choose another port with --http-port, or "
                              "stop what uses it") from exc

    def _proxy_config(self, address: ipaddress.IPv4Interface) -> dnsmasq.ProxyConfig:
        network = self.settings.proxy_network or address.network
        return dnsmasq.ProxyConfig(
            interface=self.settings.interface, network=network,
            tftp_root=self.run_dir / "tftp", ipxe_macs=self.settings.ipxe_macs,
            dangerous_dhcp_range=self.settings.dangerous_dhcp_range,
            lease_file=self.run_dir / "dnsmasq.leases")

    def _decide(self, kind: str, mac: str | None, serial: str | None,
                client: str) -> BootDecision:
        with self.registry.session() as s:
            if kind == "inventory":
                return decisions.inventory(s, mac=mac, serial=serial, client=client)
            return decisions.decide(s, mac=mac, serial=serial, client=client)

    def check(self) -> None:
        """ImagerError when dnsmasq stopped on its own."""
        if self._dnsmasq is not None:
            self._dnsmasq.child.check()

    def stop(self) -> None:
        if self._dnsmasq is not None:
            self._dnsmasq.stop()
            self._dnsmasq = None
        if self._http is not None:
            self._http.stop()
            self._http = None
        if self._watch is not None:
            self._watch.stop()
            self._watch = None
