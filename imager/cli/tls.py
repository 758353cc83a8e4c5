"""`imager keys tls-ca|tls-install`: the station's HTTPS certificate and the CA
its agents pin (imager.station.tls)."""

from __future__ import annotations

import argparse
from pathlib import Path

from imager.cli.context import Context


def register_keys(ksub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The TLS actions of `imager keys`."""
    ca = ksub.add_parser("tls-ca", help="write the CA the agents pin (HTTPS), for `imager "
                         "agent run --ca` and the boot media")
    ca.add_argument("output", type=Path)
    ca.set_defaults(func=cmd_tls_ca)
    ins = ksub.add_parser("tls-install", help="serve HTTPS with a certificate of your own CA "
                          "instead of the station's (remove <data dir>/keys/tls-installed.* "
                          "to go back)")
    ins.add_argument("cert", type=Path, metavar="CERT",
                     help="PEM: the server certificate (its subjectAltName naming what "
                          "agents connect to), then its issuers up to the CA agents will pin")
    ins.add_argument("key", type=Path, metavar="KEY", help="its private key (PEM, no password)")
    ins.set_defaults(func=cmd_tls_install)


def cmd_tls_ca(args: argparse.Namespace, ctx: Context) -> int:
    from imager.certify.identity import load_profile
    from imager.certify.keys import fingerprint, keys_dir, pem
    from imager.host.files import write_atomic
    from imager.station.tls import pinned
    cert = pinned(keys_dir(ctx.settings), load_profile(ctx.settings))
    write_atomic(args.output, pem(cert).encode("ascii"), mode=0o644)   # no secret in it
    print(f"{args.output}: CA TLS de la station / station's TLS CA {fingerprint(cert)} "
          f"({cert.subject.rfc4514_string()}); agents: `imager agent run --station "
          f"https://… --ca {args.output}`")
    return 0


def cmd_tls_install(args: argparse.Namespace, ctx: Context) -> int:
    from imager.certify.keys import fingerprint, keys_dir
    from imager.station.tls import install
    tls = install(keys_dir(ctx.settings), args.cert, args.key)
    print(f"certificat HTTPS installé / HTTPS certificate installed for {', '.join(tls.names)} "
          f"until {tls.cert.not_valid_after_utc:%Y-%m-%d}, served at the next `imager serve`; "
          f"agents pin {tls.pinned.subject.rfc4514_string()} ({fingerprint(tls.pinned)}): "
          "`imager keys tls-ca FILE` writes it")
    return 0
