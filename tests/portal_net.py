"""A network for the portal's tests: a network CA, stations whose keys it certified
(through `imager keys csr` / `imager keys install`, as a coordinator does), the
portal's HTTPS certificate from a test CA the stations pin, and a real `imager
portal serve` process (on loopback, or on an address of a network namespace).

`PortalNet` puts each party in its own network namespace (tests/bootnet.py's
BenchNet without its router): a bridge in a "lan" namespace, and one namespace per
party joined to it by a veth, with an address on a private subnet. `inside(name)`
runs the calling thread (and the processes it starts) in a party's namespace:

    with PortalNet(tmp, ["portal", "gap", "visitor"]) as net, net.inside("portal"):
        portal.start()                   # `imager portal serve` in the portal's
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import ssl
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from bootnet import BenchNet, _run
from certmaker import Made, make, pem, tls_server_context
from clirun import imager, spawn
from station_proc import Console, free_port, until
from test_certify_network_ca import _issue

from imager.certify.identity import load_profile
from imager.settings import Settings
from imager.station.tls import TlsCa


def network_ca(folder: Path, name: str = "AC du réseau solidaire") -> tuple[Made, Path]:
    """A network CA (P-256, may issue station CAs below it) and its certificate file."""
    ca = make(name, pathlen=1)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "network-ca.pem"
    path.write_bytes(pem(ca.cert))
    return ca, path


def station(data: Path, organisation: str, verify_url: str, ca: Made | None) -> Path:
    """A station data dir named `organisation`, whose QR codes lead to `verify_url`;
    its key certified by `ca` (None: the self-signed certificate of a station outside
    the network)."""
    data.mkdir(parents=True, exist_ok=True)
    (data / "station.yaml").write_text(
        f'organisation: "{organisation}"\nstation: "{data.name}"\ncountry: FR\n'
        f'location: "{organisation}, Hautes-Alpes"\nverify_url: "{verify_url}"\n'
        'validator:\n  name: "Coordination"\n  title: "Responsable technique"\n',
        encoding="utf-8")
    if ca is not None:
        request, issued = data.parent / f"{data.name}.csr", data.parent / f"{data.name}.crt"
        imager(data, "keys", "csr", str(request))
        issued.write_bytes(_issue(ca.key, ca.cert, request.read_bytes()))
        imager(data, "keys", "install", str(issued))
    else:
        imager(data, "keys", "show")
    return data


def copy_keys(data: Path, into: Path) -> Path:
    """Another data dir holding `data`'s profile and keys, and an empty registry: the
    same station key with another ledger (a registry restored from an old backup, a key
    copied to a second machine)."""
    into.mkdir(parents=True)
    shutil.copy2(data / "station.yaml", into / "station.yaml")
    shutil.copytree(data / "keys", into / "keys")
    return into


@dataclass
class PortalTls:
    ca: Path           # what the stations pin (--ca)
    cert: Path
    key: Path


def portal_tls(folder: Path, host: str = "127.0.0.1") -> PortalTls:
    """The portal's HTTPS certificate for `host`, from a test CA."""
    issuer = TlsCa.open(folder / "ca", load_profile(Settings(data_dir=folder)))
    tls_server_context(issuer, folder / "server", days=(-1, 30), names=[host])
    return PortalTls(issuer.path, folder / "server" / "server.pem",
                     folder / "server" / "server.key")


class Portal:
    """`imager portal serve` on `host` (127.0.0.1 unless told) over HTTPS, stoppable
    and restartable."""

    def __init__(self, folder: Path, database: str, network_ca: Path, tls: PortalTls,
                 *, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.folder, self.database, self.network_ca, self.tls = folder, database, network_ca, tls
        self.host, self.port = host, port or free_port()
        self.url = f"https://{host}:{self.port}"
        self.proc: subprocess.Popen[str] | None = None
        self.console: Console | None = None      # what it printed (stderr), read as it comes

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.tls.ca))

    def start(self) -> None:
        self.proc = spawn(self.folder, "portal", "serve", "--listen", f"{self.host}:{self.port}",
                          "--database", self.database, "--network-ca", str(self.network_ca),
                          "--tls-cert", str(self.tls.cert), "--tls-key", str(self.tls.key))
        assert self.proc.stderr is not None
        self.console = Console(self.proc.stderr)
        until(self._up, 60, "the portal answers")

    def _up(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            said = self.console.lines if self.console else []
            raise AssertionError(f"imager portal serve exited: {said}")
        try:
            return self.get("/api/portal/v1/health").status_code == 200
        except httpx.HTTPError:
            return False

    def client(self, source: str | None = None, **options: Any) -> httpx.Client:
        """An HTTPS client that trusts the portal's test CA only; from the loopback
        address `source` (another office: the sign-in limits count per address)."""
        if source is not None:
            options["transport"] = httpx.HTTPTransport(verify=self.context(),
                                                       local_address=source)
        return httpx.Client(base_url=self.url, verify=self.context(), timeout=30, **options)

    def get(self, path: str, **options: Any) -> httpx.Response:
        with self.client() as http:
            return http.get(path, **options)

    def stop(self) -> None:
        """SIGTERM; SIGKILL if it has not ended 30 s later."""
        if self.proc is None:
            return
        self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(30)
        self.proc.kill()                 # nothing, once it ended
        self.proc.wait()


# -- network namespaces -----------------------------------------------------------------

SUBNET = "10.67.0"              # not bootnet's 10.66.0: both may run on one machine
CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


class PortalNet(BenchNet):
    """A bridge in a "lan" namespace and one namespace per party (`parties`), each
    joined to the bridge by a veth with the address `address[party]` on SUBNET.0/24;
    everything made is removed on exit (BenchNet.close), processes left in them
    killed. No router, no DHCP: fixed addresses."""

    def __init__(self, workdir: Path, parties: Sequence[str]) -> None:
        super().__init__(workdir)
        self.namespace = {p: f"{self.tag}-{i}{p[:6]}" for i, p in enumerate(parties)}
        self.address = {p: f"{SUBNET}.{10 + i}" for i, p in enumerate(parties)}
        self._extra: list[str] = []

    def _create(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._add_namespace(self.lan)
        _run(["ip", "-n", self.lan, "link", "add", "br0", "type", "bridge", "stp_state", "0",
              "forward_delay", "0"])
        _run(["ip", "-n", self.lan, "link", "set", "br0", "up"])
        for i, (party, ns) in enumerate(self.namespace.items()):
            self._add_namespace(ns)
            self._veth(f"x{i}", ns, "eth0", f"{self.address[party]}/24")

    def add_address(self, party: str) -> str:
        """One more address on `party`'s interface (a client the portal has not seen)."""
        extra = f"{SUBNET}.{100 + len(self._extra)}"
        self.run(self.namespace[party], ["ip", "addr", "add", f"{extra}/24", "dev", "eth0"])
        self._extra.append(extra)
        return extra

    @contextlib.contextmanager
    def inside(self, party: str) -> Iterator[None]:
        """The calling thread in `party`'s namespace (and what it starts), then back
        in the one it was in."""
        back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        there = os.open(f"/run/netns/{self.namespace[party]}", os.O_RDONLY)
        try:
            _setns(there)
            yield
        finally:
            _setns(back)
            os.close(there)
            os.close(back)


# -- donors' accounts (tests/test_portal_donors.py, tests/test_portal_browser.py) ---------

COMPANY = "Société Alpine d'Électricité"
COMPANY_SIRET = "55208131766522"
OTHER = "Mairie de Saint-Véran"                  # donor B
OTHER_SIRET = "21050156400017"
DONATION_REF, OTHER_REF = "DON-2026-0107", "DON-2026-0200"
LAPTOP_SERIAL = "PF1GAP7X"            # the SMBIOS serial of the laptop WD-GAP-0001 came in
DONATION_TECH = "Zoé Müller-Lefèvre"


def workshops(base: Path, verify_url: str, ca: Made) -> dict[str, Any]:
    """Two workshops of the network, each with a donation of COMPANY (a destroyed
    drive and the donation's certificate): Gap knows its SIRET, Briançon knows it by
    name only. Gap also has a donation of OTHER (donor B). The documents are the
    stations' own (`imager cert destroy`, `imager cert donation`)."""
    from test_web_verify import _destroy

    gap = station(base / "gap", "Atelier de Gap", verify_url, ca)
    bri = station(base / "briancon", "Atelier de Briançon", verify_url, ca)
    imager(gap, "donors", "add", "--kind", "entreprise", "--siret", COMPANY_SIRET, COMPANY)
    imager(gap, "donors", "add", "--kind", "mairie", "--siret", OTHER_SIRET, OTHER)
    imager(bri, "donors", "add", "--kind", "entreprise", COMPANY)
    for data in (gap, bri):
        imager(data, "technicians", "add", "--level", "Niveau 3", DONATION_TECH)
        imager(data, "donations", "add", "--donor", COMPANY, DONATION_REF)
    imager(gap, "donations", "add", "--donor", OTHER, OTHER_REF)
    docs = {"gap": _destroy(gap, "WD-GAP-0001"), "briancon": _destroy(bri, "WD-BRI-0001")}
    in_laptop(gap, "WD-GAP-0001", LAPTOP_SERIAL)
    for data in (gap, bri):
        imager(data, "cert", "donation", DONATION_REF)
    return {"gap": gap, "briancon": bri, "docs": docs}


def in_laptop(data: Path, drive_serial: str, laptop_serial: str) -> None:
    """Record that the drive `drive_serial` came in a laptop (what a machine agent's
    inventory records: its SMBIOS vendor, model and serial)."""
    from sqlalchemy import select

    from imager.store.db import Registry, utcnow
    from imager.store.models import Drive, Machine

    with Registry.open(Settings(data_dir=data)) as reg, reg.session() as s:
        laptop = Machine(vendor="LENOVO", model="ThinkPad T480", serial=laptop_serial,
                         created_at=utcnow())
        s.add(laptop)
        s.flush()
        drive = s.scalars(select(Drive).where(Drive.serial == drive_serial)).one()
        drive.machine_id = laptop.id


def push_all(portal: Portal, *stations: Path) -> None:
    """Each station sends the portal what it lacks (`imager portal push`)."""
    for data in stations:
        imager(data, "portal", "push", "--portal", portal.url, "--ca", str(portal.tls.ca))
