"""`imager boot serve` and `imager boot nic`: the network boot service.

`register_actions(bsub)` adds both actions to the `boot` group's subparsers
(the group itself belongs to `imager boot build`'s module); `register(sub)`
makes a `boot` group holding only these two, for a tree without the build.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import threading
from pathlib import Path
from types import FrameType

from imager.cli.context import Context
from imager.errors import UsageError

HTTP_PORT = 8471
DANGER = ("ce poste distribuera lui-même les adresses du réseau : seulement sur un réseau de "
          "banc SANS autre serveur DHCP (box, routeur) / this station will itself give out "
          "the network's addresses: only on a bench network with NO other DHCP server")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("boot", help="démarrage des portables / laptops' boot")
    register_actions(p.add_subparsers(dest="boot_command", metavar="ACTION", required=True))


def register_actions(bsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `serve` and `nic` actions of `imager boot`."""
    p = bsub.add_parser(
        "serve", help="démarrage réseau des portables / network boot service",
        description="Démarre les portables depuis le réseau du banc : proxy-DHCP (le routeur "
                    "garde les adresses), TFTP et HTTP sur l'interface du banc seulement. / "
                    "Network boot for laptops on the bench interface only: proxy-DHCP (the "
                    "router keeps giving addresses), TFTP, HTTP.")
    p.add_argument("--interface", required=True, metavar="IFACE",
                   help="the bench network interface (a dedicated VLAN is best)")
    p.add_argument("--station-url", metavar="URL",
                   help="the station the live system's agent enrols with (default "
                        "https://<interface address>:8470)")
    p.add_argument("--files", type=Path, metavar="DIR",
                   help="the live system's folder (`imager boot build`; default "
                        "<data dir>/boot/live)")
    p.add_argument("--http-port", type=int, default=HTTP_PORT, metavar="PORT",
                   help="plain HTTP port for GRUB and iPXE (default %(default)s)")
    p.add_argument("--proxy-network", type=ipaddress.IPv4Network, metavar="CIDR",
                   help="the network the proxy-DHCP answers on (default: the interface's)")
    p.add_argument("--run-dir", type=Path, metavar="DIR",
                   help="TFTP folder, dnsmasq's configuration and log (default "
                        "/run/imager-boot/IFACE)")
    p.add_argument("--stall", type=float, metavar="SECONDS",
                   help="seconds a laptop's boot may stay at one stage before the board "
                        "says where it stopped and why (default: 45 to 300 by stage)")
    p.add_argument("--dangerous-dhcp-server", metavar="FIRST-LAST",
                   help="ALSO act as the DHCP server, leasing FIRST to LAST: " + DANGER)
    p.set_defaults(func=cmd_serve)
    n = bsub.add_parser("nic", help="iPXE sous UEFI pour une carte réseau / iPXE under UEFI "
                        "for one network card",
                        description="Liste les cartes réseau que GRUB ne sait pas piloter : "
                                    "elles démarrent iPXE (snponly.efi) au lieu de shim. / "
                                    "Lists the NICs GRUB cannot drive: they boot iPXE's "
                                    "snponly.efi instead of shim. Without MAC: the list.")
    n.add_argument("mac", nargs="?", metavar="MAC")
    n.add_argument("--ipxe", action=argparse.BooleanOptionalAction, default=True,
                   help="--ipxe lists the card (default), --no-ipxe removes it")
    n.set_defaults(func=cmd_nic)


def _dhcp_range(text: str | None) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address] | None:
    if text is None:
        return None
    first, sep, last = text.partition("-")
    try:
        if not sep:
            raise ValueError(text)
        return ipaddress.IPv4Address(first.strip()), ipaddress.IPv4Address(last.strip())
    except ValueError as exc:
        raise UsageError(f"--dangerous-dhcp-server {text!r}: give FIRST-LAST, e.g. "
                         "10.66.0.100-10.66.0.199") from exc


def cmd_serve(args: argparse.Namespace, ctx: Context) -> int:
    from imager.boot.files import BootFiles
    from imager.boot.nics import ipxe_macs
    from imager.boot.service import BootService, BootSettings
    from imager.certify.identity import load_profile
    from imager.certify.keys import keys_dir, pem
    from imager.station.tls import pinned
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    danger = _dhcp_range(args.dangerous_dhcp_server)
    settings = BootSettings(
        interface=args.interface,
        files=BootFiles.in_folder(args.files or ctx.settings.data_dir / "boot" / "live"),
        station_url=args.station_url, http_port=args.http_port,
        proxy_network=args.proxy_network, run_dir=args.run_dir,
        ipxe_macs=ipxe_macs(ctx.settings), dangerous_dhcp_range=danger,
        stall_seconds=args.stall)
    ca = pem(pinned(keys_dir(ctx.settings), load_profile(ctx.settings))).encode("ascii")
    service = BootService(settings, ctx.registry, station_ca_pem=ca)
    stop = _stop_on_signals()
    service.start()
    try:
        _banner(service, danger is not None)
        while not stop.wait(1.0):
            service.check()
    finally:
        service.stop()
    return 0


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def _banner(service: object, dhcp_server: bool) -> None:
    from imager.boot.service import BootService
    assert isinstance(service, BootService) and service.server is not None
    mode = (f"ATTENTION / WARNING: serveur DHCP / DHCP server: {DANGER}" if dhcp_server else
            "proxy-DHCP : le routeur du réseau donne les adresses / the router gives addresses")
    print(f"Démarrage réseau / network boot: {service.settings.interface} "
          f"({service.server.host}), HTTP {service.server.http}, station "
          f"{service.server.station_url}\n{mode}\n"
          "Arrêt / stop: Ctrl-C", flush=True)


def cmd_nic(args: argparse.Namespace, ctx: Context) -> int:
    from imager.boot.nics import ipxe_macs, set_ipxe
    listed = ipxe_macs(ctx.settings) if args.mac is None else set_ipxe(
        ctx.settings, args.mac, ipxe=args.ipxe)
    print("\n".join(listed) if listed else "aucune carte réseau en iPXE / no NIC on iPXE")
    if args.mac is not None:
        print("pris en compte au prochain `imager boot serve` / applies at the next "
              "`imager boot serve`")
    return 0
