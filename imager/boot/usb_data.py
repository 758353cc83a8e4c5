"""The stick's data partition (ext4, label IMAGER-DATA): the offline kit, the
spool and the station's CA; found, mounted and read back; its spool carried
over when the stick is written again.

    kit/              the offline kit (`imager agent kit`): the station's signed erase
                      policy and certificate, maybe a signed catalogue image (systeme/)
    spool/            the offline agent's events (`imager agent run --spool`), its key
    spool/sent/       the events the station acknowledged (the outbox moves them here)
    station-ca.pem    the CA the live system's agent pins
    LISEZMOI.txt      what the stick is, for a person who opens it

The live system booted with `imager.boot=usb` mounts it by label (`mount
LABEL=IMAGER-DATA`, ext4 with metadata_csum: the kernel loads crc32c for it) and,
with no station to reach, runs `imager agent run --machine --offline-kit
<mnt>/kit --erase --spool <mnt>/spool --boot usb`.

ext4 rather than FAT: a journal (a laptop switched off in the middle of an
erasure does not lose the spool's last events), the atomic rename the outbox
relies on, and owner-only modes for the agent's key. The station (Linux) and
the live system (its kernel's ext4 module) both mount it simply."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from imager.errors import ImagerError, UsageError

# The partition as this host sees it (also what the dock agent and the guard read).
from imager.host.stick_data import (
    LABEL,
    SENT,
    SPOOL,
    SUFFIX,
    find,
    mountpoint_of,
    opened,
    pending,
    probe,
    sent,
)
from imager.settings import Settings

__all__ = ["CA", "KIT", "LABEL", "README", "SAVED", "SENT", "SPOOL", "SUFFIX", "add_spool",
           "check_carried", "digest", "find", "mountpoint_of", "opened", "pending", "probe",
           "save", "saved_folder", "sent", "stage"]
KIT, CA = "kit", "station-ca.pem"
README = "LISEZMOI.txt"
README_TEXT = """\
Clé USB de la station imager.

Cette clé démarre un ordinateur portable sur le système de la station.
Sans réseau, l'ordinateur efface ses disques selon la politique signée
du dossier kit/ et garde ses rapports dans le dossier spool/.

Rapportez la clé à la station : elle envoie les rapports (spool/) et
les range dans spool/sent/. Ne supprimez pas ces fichiers vous-même.

USB stick of the imager station: kit/ (signed erase policy), spool/ (the
reports waiting for the station; sent/ those it received), station-ca.pem.
"""
SAVED = "usb-spools"          # <data dir>/usb-spools/<stick>: a spool while its stick is written


def stage(tree: Path, *, ca_pem: bytes) -> None:
    """The data partition's files in `tree` (made into the filesystem by mkfs.ext4
    -d): kit/ is already there; the CA and the README."""
    (tree / CA).write_bytes(ca_pem)
    (tree / README).write_text(README_TEXT, encoding="utf-8")


def add_spool(tree: Path, spool: Path | None) -> None:
    """The spool in `tree`: carried over from `spool`, or a new empty one; with its
    sent/ folder (the outbox then keeps what the station answered for)."""
    target = tree / SPOOL
    shutil.rmtree(target, ignore_errors=True)
    if spool is not None:
        shutil.copytree(spool, target, symlinks=True)
    target.mkdir(mode=0o700, exist_ok=True)
    (target / SENT).mkdir(mode=0o700, exist_ok=True)
    os.chmod(target, 0o700)


def digest(spool: Path) -> dict[str, str]:
    """Each file under `spool` (relative path) -> sha256: what must survive a rewrite."""
    out: dict[str, str] = {}
    for path in sorted(p for p in spool.rglob("*") if p.is_file() and not p.is_symlink()):
        with open(path, "rb") as fh:
            out[str(path.relative_to(spool))] = hashlib.file_digest(fh, "sha256").hexdigest()
    return out


def saved_folder(settings: Settings, stick_key: str) -> Path:
    """Where the spool of the stick `stick_key` waits while the stick is written."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stick_key)
    return settings.data_dir / SAVED / safe


def save(part: str | None, settings: Settings, stick_key: str) -> Path | None:
    """Copy the stick's spool (data partition `part`) to the station before the
    stick is written; the copy's folder, or None when there is nothing to carry.
    A copy left by a write that failed is carried (refused if the stick has
    another spool of its own again: a person must sync one of them first)."""
    saved = saved_folder(settings, stick_key)
    left = saved / SPOOL
    if part is None:
        return saved if left.is_dir() else None
    with opened(part, settings, read_only=True) as root:
        spool = root / SPOOL
        if not spool.is_dir():
            return saved if left.is_dir() else None
        if left.is_dir() and digest(spool) in ({}, digest(left)):
            return saved                # a write that failed: nothing else on the stick
        if left.is_dir():
            raise UsageError(
                f"une copie du spool d'une écriture interrompue attend dans {left}, et la clé "
                f"a son propre spool / a spool saved by an interrupted write waits in {left} "
                f"and the stick {part} has a spool too: upload the saved one first (`imager "
                f"agent sync --station URL --spool {left}`), remove {saved}, then write the "
                "stick again")
        saved.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            shutil.copytree(spool, left, symlinks=True)
            why = "" if digest(left) == digest(spool) else "the copy differs"
        except OSError as exc:
            why = exc.strerror or str(exc)
        if why:
            shutil.rmtree(saved, ignore_errors=True)
            raise ImagerError(f"impossible de copier le spool de la clé / cannot copy the "
                              f"stick's spool to {left} ({why}): nothing was written to the "
                              "stick; check the station's disk space and try again")
    return saved


def check_carried(part: str, saved: Path, settings: Settings) -> int:
    """After the write: the stick's spool is the saved one, file for file; then the
    saved copy is removed. The number of files carried over."""
    expected = digest(saved / SPOOL)
    with opened(part, settings, read_only=True) as root:
        found = digest(root / SPOOL)
    lost = sorted(set(expected) - set(found)) + \
        sorted(k for k in expected if k in found and found[k] != expected[k])
    if lost:
        raise ImagerError(
            f"le spool n'a pas été recopié sur la clé / the spool was not written back to the "
            f"stick ({len(lost)} file(s) missing or different, e.g. {lost[0]}): it stays on "
            f"the station in {saved / SPOOL}; upload it with `imager agent sync --spool "
            f"{saved / SPOOL}`, or write the stick again")
    shutil.rmtree(saved)
    return len(expected)
