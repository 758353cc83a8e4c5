"""`imager agent run|sync|kit`: the agent of a dock bench or of a booted laptop, and
the offline kit (the station's signed erase policy) for laptops erased with no network."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from imager.cli.context import Context
from imager.cli.render import console
from imager.errors import UsageError
from imager.host.owner import secure_boot
from imager.jobs.batch import stop_on_signals

if TYPE_CHECKING:
    from imager.agent.agent import AgentConfig
    from imager.agent.tls import StationTrust
    from imager.settings import Settings


# `imager agent run --machine` exits with this when the station says the laptop is done
# (its system installed, or inventoried only): the live system then restarts it.
LAPTOP_DONE = 3


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("agent")
    asub = p.add_subparsers(dest="agent_command", metavar="ACTION", required=True)
    k = asub.add_parser("kit", help="write the offline kit (signed erase policy) into DIR")
    k.add_argument("folder", type=Path, metavar="DIR",
                   help="the folder on the USB stick the offline agent reads (--offline-kit)")
    k.add_argument("--image", metavar="NAME",
                   help="also carry this catalogue image (its latest version unless "
                        "--image-version): the offline agent installs it on each drive it "
                        "erased and verified")
    k.add_argument("--image-version", metavar="VERSION")
    k.set_defaults(func=cmd_kit)
    for name, func, text in (("run", cmd_run, "watch the docks, report, run the jobs"),
                             ("sync", cmd_sync, "upload a spool (e.g. from a USB stick)")):
        a = asub.add_parser(name, help=text)
        a.add_argument("--station", metavar="URL", default=os.environ.get("IMAGER_STATION"),
                       help="the station (env IMAGER_STATION); without it: offline, "
                            "everything goes to the spool")
        a.add_argument("--boot-token", default=os.environ.get("IMAGER_BOOT_TOKEN"),
                       help="a single-use boot token (env IMAGER_BOOT_TOKEN; the station's "
                            "boot service puts it on the kernel command line); without it "
                            "the agent waits for a technician (pairing code or approval)")
        a.add_argument("--key", type=Path, metavar="FILE",
                       help="the agent's own key (made on first start; default "
                            "<spool>/agent.key): it is the agent's identity, keep it private")
        a.add_argument("--ca", type=Path, metavar="FILE",
                       default=os.environ.get("IMAGER_STATION_CA") or None,
                       help="the CA of an https:// station, the only one trusted (env "
                            "IMAGER_STATION_CA): `imager keys tls-ca FILE` on the station "
                            "exports it; a boot medium carries it")
        a.add_argument("--insecure-http", action="store_true",
                       help="allow an http:// station on another machine: UNSAFE, the "
                            "agent's requests and its reports cross the network in clear, "
                            "for anyone on it to read")
        a.add_argument("--name", default=socket.gethostname())
        a.add_argument("--spool", type=Path, metavar="DIR",
                       help="where events wait for the station (default: <data dir>/spool/"
                            "NAME; a USB stick for offline use)")
        a.set_defaults(func=func)
        if name == "run":
            a.add_argument("--boot", choices=("usb", "installed"),
                           default=os.environ.get("IMAGER_BOOT"),
                           help="how this machine was booted, for the certificates (a network "
                                "boot is known from its boot token)")
            a.add_argument("--offline-kit", type=Path, metavar="DIR",
                           help="the station's offline kit (`imager agent kit DIR`): its "
                                "signed erase policy, for --erase with no station")
            a.add_argument("--erase", action="store_true",
                           help="with --offline-kit and no --station: erase every drive "
                                "offered (not USB sticks or SD cards) by the signed policy, "
                                "verified in full; the reports wait in the spool for "
                                "`imager agent sync`")
            a.add_argument("--machine", action="store_true",
                           help="report this machine's inventory and triage (laptop mode)")
            a.add_argument("--no-watch", action="store_true", help="do not watch the docks")
            a.add_argument("--only-lab", action="store_true",
                           help="watch only the lab drives of this data dir (`imager lab up`)")
            a.add_argument("--once", action="store_true",
                           help="report and stop (with --machine), after the spool is sent")
            a.add_argument("--no-sync-sticks", dest="sync_sticks", action="store_false",
                           help="a dock agent (not --machine) with a station sends by itself "
                                "the reports of an imager USB stick plugged in (IMAGER-DATA: "
                                "never offered as a drive, never erased), once per insertion, "
                                "and tells the board; with this flag it only says so, and "
                                "`imager boot usb-sync DEVICE` sends them")
            a.add_argument("--status-file", type=Path, metavar="FILE",
                           help="write where the agent is (enrolled, pending code, job "
                                "progress) into FILE as JSON: the live system's screen")


def _config(args: argparse.Namespace, ctx: Context, *, kind: str) -> AgentConfig:
    from imager.agent.agent import AgentConfig
    from imager.agent.tls import station_trust
    trust = station_trust(args.station, args.ca, insecure_http=args.insecure_http) \
        if args.station else None
    if trust is not None:
        _check_trusted(args.station, trust)
    spool = args.spool or ctx.settings.data_dir / "spool" / args.name
    return AgentConfig(name=args.name, spool=spool, station=args.station, key=args.key,
                       boot_token=args.boot_token, kind=kind, trust=trust,
                       boot=getattr(args, "boot", None),
                       secure_boot=secure_boot(ctx.settings.sys_root),
                       offline_kit=getattr(args, "offline_kit", None),
                       erase_offline=getattr(args, "erase", False),
                       status=getattr(args, "status_file", None),
                       sync_sticks=getattr(args, "sync_sticks", True))


def _check_trusted(url: str, trust: StationTrust) -> None:
    """Refuse a station whose certificate the pinned CA does not vouch for, at
    start; one that does not answer yet is tried again by the agent."""
    from imager.agent.client import StationClient, StationNotTrusted, StationUnreachable
    client = StationClient(url, None, trust=trust, timeout=5.0)
    try:
        client.health()
    except StationNotTrusted:
        raise
    except StationUnreachable:
        pass
    finally:
        client.close()


def cmd_run(args: argparse.Namespace, ctx: Context) -> int:
    from imager.agent.agent import Agent
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config = _config(args, ctx, kind="machine" if args.machine else "dock")
    config.watch = not args.no_watch and (not args.once or config.erase_offline)
    config.machine, config.only_lab = args.machine, args.only_lab
    agent = Agent(ctx.settings, config)
    stop = threading.Event()
    with stop_on_signals(stop):
        agent.start(stop)
        if args.once:
            if config.erase_offline:      # the drives present now, erased, then stop
                while not agent.watching.wait(0.2) and not stop.is_set():
                    pass
                while agent.running and not stop.wait(0.2):
                    pass
            while config.station and not agent.flushed.wait(0.2) and not stop.is_set():
                pass
            stop.set()
        else:
            while not stop.wait(0.5) and not agent.laptop_done.is_set():
                pass
            stop.set()
        agent.join()
    left = len(agent.outbox.pending())
    console(stderr=True, markup=False).print(
        f"Agent arrêté / stopped; en attente / waiting in {config.spool}: {left}")
    if agent.laptop_done.is_set():
        console(stderr=True, markup=False).print(
            "Ce portable est terminé : il peut redémarrer / this laptop is done: it may "
            "restart")
        return LAPTOP_DONE
    return 0


def cmd_kit(args: argparse.Namespace, ctx: Context) -> int:
    """Write the station's signed erase policy and certificate into a folder."""
    written, label = write_offline_kit(ctx.settings, args.folder, image=args.image,
                                       image_version=args.image_version)
    console(markup=False).print(
        f"Kit hors ligne / offline kit ({label}): {', '.join(str(p) for p in written)}\n"
        f"Sur le portable / on the laptop: imager agent run --offline-kit {args.folder} "
        "--erase --once --spool <stick>/spool, puis sur la station / then on the station: "
        "imager agent sync --station URL --spool <stick>/spool")
    return 0


def write_offline_kit(settings: Settings, folder: Path, *, image: str | None = None,
                      image_version: str | None = None) -> tuple[list[Path], str]:
    """The offline kit in `folder` (`imager agent kit`, `imager boot usb`): the signed
    erase policy, the station's certificate and, if asked, a signed catalogue image;
    the files written and the policy's label."""
    from imager.certify.keys import station_keys
    from imager.erase import policy as erase_policy
    from imager.erase.offline_policy import write_kit
    text, where = erase_policy.KIND.read(settings.erase_policy, erase_policy.SHIPPED)
    written = write_kit(folder, text, station_keys(settings))
    if image:
        from imager.agent.offline_image import write_image
        from imager.station import image_store
        entry = image_store.catalogue(settings).get(image, image_version)
        if not entry.signed:
            raise UsageError(f"l'image {entry.name} {entry.version} n'est pas signée / is not "
                             f"signed: sign it (`imager image sign {entry.name} "
                             f"{entry.version}`), the laptop checks it before writing it")
        written.append(write_image(folder, entry).files.manifest)
    elif image_version:
        raise UsageError("--image-version goes with --image NAME")
    return written, erase_policy.parse(text, source=where).label


def cmd_sync(args: argparse.Namespace, ctx: Context) -> int:
    from imager.agent.agent import sync
    if not args.station:
        raise UsageError("--station is missing: give the station's URL")
    result = sync(ctx.settings, _config(args, ctx, kind="dock"))
    console(markup=False).print(
        f"Agent {result.agent}: appliqués / applied {result.applied}, déjà reçus / "
        f"duplicates {result.duplicate}, refusés / refused {result.refused}, restants / "
        f"left {result.left}, mis de côté (malformés, gardés en .damaged) / set aside "
        f"(malformed, kept as .damaged) {result.set_aside}")
    return 0 if result.left == result.refused == result.set_aside == 0 else 1
