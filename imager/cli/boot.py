"""`imager boot ACTION`: booting laptops into the station's live system. Each
module below adds its actions to the group with `register_actions(bsub)`:
boot_build (`build`), boot_serve (`serve`, `nic`), boot_usb (`usb`, `usb-sync`)."""

from __future__ import annotations

import argparse
import importlib

ACTIONS = ("boot_build", "boot_serve", "boot_usb")     # modules under imager.cli


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("boot", description="Démarrage des portables sur le système de "
                                           "l'atelier / booting laptops into the live system")
    bsub = p.add_subparsers(dest="boot_command", metavar="ACTION", required=True)
    for module in ACTIONS:
        importlib.import_module(f"imager.cli.{module}").register_actions(bsub)
