#!/usr/bin/env python3
"""Certificate issuing and verification times, against peers measured in the same run.

    .venv/bin/python bench/certificates.py [--drives 500] [--verifications 10000]

Runs in a temporary data dir (SQLite registry, fresh station keys). One real
erasure (of a sparse image file, `imager erase --allow-file`) gives the erase
report every certificate is built from. Printed, with the issue's targets:

  one drive certificate (record + Ed25519 + PDF + PAdES + ledger), warm  (< 0.5 s)
      peer: WeasyPrint rendering of the same page alone
  donation certificate of --drives drives (record, CSV, PDF, PAdES)    (< 10 s)
      peer: issuing the same number of drive certificates one by one
  --verifications signed JSON certificates verified (byte check, hash,
      Ed25519, schema), on every core as `imager cert verify` does      (< 2 s)
      peers: the same on one core; the bare Ed25519 verifications alone

The donation's drive documents are written straight into the registry (copies
of the real one with other serials): issuing 500 real PDFs first would only
make the setup long; the donation step itself runs the real code.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imager.certify.record import new_id  # noqa: E402
from imager.certify.render import render_drive_pdf  # noqa: E402
from imager.certify.signing import Checks, Trust, read_envelope, sign_document  # noqa: E402
from imager.certify.verify import check_json, verify_many  # noqa: E402
from imager.registry.issue import Issuer  # noqa: E402
from imager.settings import Settings  # noqa: E402
from imager.store import people  # noqa: E402
from imager.store.db import Registry  # noqa: E402
from imager.store.models import Document, Drive  # noqa: E402

REF = "BENCH-2026-0001"


def timed(fn) -> float:  # noqa: ANN001
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def setup(data: Path) -> tuple[Settings, Registry, int]:
    settings = Settings(data_dir=data)
    reg = Registry.open(settings)
    with reg.session() as s:
        donor = people.add_donor(s, "entreprise", "Société Générale d'Électronique Alpine",
                                 siret="73282932000074")
        people.add_donation(s, REF, donor.id, datetime.now(UTC).date(), intake_site="Gap")
        people.add_technician(s, "Zoé Müller-Lefèvre", level="Niveau 2")
    image = data / "drive.img"
    with open(image, "wb") as fh:
        fh.truncate(8 << 20)
    env = {**os.environ, "IMAGER_DATA_DIR": str(data)}
    out = subprocess.run([sys.executable, "-m", "imager", "erase", "--allow-file", str(image),
                          "--donation", REF, "--technician", "Zoé Müller-Lefèvre", "--json"],
                         capture_output=True, text=True, env=env, check=False)
    report = [json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")][-1]
    if report.get("outcome") != "erased":
        sys.exit(f"bench setup: the erasure failed: {out.stderr or report}")
    return settings, reg, int(report["job_id"])


def bench_one(issuer: Issuer, job: int, repeat: int) -> dict[str, float]:
    cold = timed(lambda: issuer.for_job(job, again=True))
    warm = [timed(lambda: issuer.for_job(job, again=True)) for _ in range(repeat)]
    doc = issuer.for_job(job)
    envelope = read_envelope(doc.json_path.read_bytes(), Checks())
    record, signed = envelope["document"], doc.json_path.read_bytes()
    render = [timed(lambda: render_drive_pdf(record, sha256=doc.sha256, verify_url="",
                                             attachments=[("r.json", signed, "")]))
              for _ in range(repeat)]
    return {"cold": cold, "warm": statistics.median(warm), "render": statistics.median(render),
            "line": record}


def fill_donation(reg: Registry, record: dict, count: int) -> None:
    """`count` drives of the donation, each with a drive document (copies of the real one)."""
    from imager.certify.donation import drive_line
    with reg.session() as s:
        donation = people.find_donation(s, REF)
        base = drive_line(record, "0" * 64)
        for i in range(count - 1):
            drive = Drive(identity=f"serial:BENCH:{i:05d}", model="BENCH SSD", serial=f"{i:05d}",
                          size_bytes=base["capacity_bytes"], donation_id=donation.id,
                          created_at=datetime.now(UTC))
            s.add(drive)
            s.flush()
            rid = new_id("erasure", datetime.now(UTC))
            s.add(Document(id=rid, kind="erasure", drive_id=drive.id, donation_id=donation.id,
                           issued_at=datetime.now(UTC), json_sha256=secrets.token_hex(32),
                           line={**base, "certificate": rid, "serial": f"{i:05d}",
                                 "sha256": secrets.token_hex(32)}))


def bench_verify(issuer: Issuer, record: dict, count: int, folder: Path) -> dict[str, float]:
    folder.mkdir()
    signed = []
    for i in range(count):
        rec = {**record, "id": new_id("erasure", datetime.now(UTC)),
               "ledger": {"seq": i + 1, "prev": secrets.token_hex(32)}}
        data = sign_document(rec, issuer.keys)
        signed.append(data)
        (folder / f"{i:05d}.json").write_bytes(data)
    trust = Trust([issuer.keys.station_cert])
    paths = sorted(folder.iterdir())
    one_core = timed(lambda: [check_json(d, trust, Checks()) for d in signed])
    all_cores = timed(lambda: verify_many(paths, trust))
    assert all(v.ok for v in verify_many(paths[:50], trust))
    key = issuer.keys.signing_key.public_key()
    sigs = [(issuer.keys.signing_key.sign(d), d) for d in signed]
    bare = timed(lambda: [key.verify(s, d) for s, d in sigs])
    return {"cores": all_cores, "one_core": one_core, "bare": bare}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--drives", type=int, default=500)
    ap.add_argument("--verifications", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="imager-bench-") as tmp:
        settings, reg, job = setup(Path(tmp) / "data")
        issuer = Issuer(settings, reg)
        one = bench_one(issuer, job, args.repeat)
        fill_donation(reg, one["line"], args.drives)
        donation = timed(lambda: issuer.donation(REF))
        ver = bench_verify(issuer, one["line"], args.verifications, Path(tmp) / "verify")
        reg.close()
    n, v = args.drives, args.verifications
    rows = [
        ("one drive certificate, warm (median)", one["warm"], 0.5,
         "WeasyPrint page alone", one["render"]),
        ("one drive certificate, first of the process", one["cold"], None, "", None),
        (f"donation certificate, {n} drives", donation, 10.0,
         f"{n} drive certificates one by one", n * one["warm"]),
        (f"{v} JSON verifications, {os.cpu_count()} cores", ver["cores"], 2.0,
         "same on one core", ver["one_core"]),
        (f"{v} JSON verifications, one core", ver["one_core"], None,
         "bare Ed25519 verifications", ver["bare"]),
    ]
    print(f"{'measure':<48} {'seconds':>8} {'target':>7} {'/target':>8}   peer")
    for name, secs, target, peer, peer_secs in rows:
        tgt = f"{target:>7.1f} {secs / target:>8.2f}" if target else f"{'':>7} {'':>8}"
        peer_txt = f"{peer}: {peer_secs:.3f} s (ratio {secs / peer_secs:.2f})" if peer else ""
        print(f"{name:<48} {secs:>8.3f} {tgt}   {peer_txt}")


if __name__ == "__main__":
    main()
