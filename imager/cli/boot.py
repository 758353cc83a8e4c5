"""`imager boot ACTION`: booting laptops into the station's live system. Each
action lives in its own module (boot_build.py: `build`), whose `register(bsub)`
adds it to the group."""

from __future__ import annotations

import argparse
import importlib

ACTIONS = ("boot_build",)       # modules under imager.cli, each adding its action


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("boot", description="Démarrage des portables sur le système de "
                                           "l'atelier / booting laptops into the live system")
    bsub = p.add_subparsers(dest="boot_command", metavar="ACTION", required=True)
    for module in ACTIONS:
        importlib.import_module(f"imager.cli.{module}").register(bsub)
