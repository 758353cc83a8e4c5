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
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from imager.errors import ImagerError, UsageError
from imager.host import devices
from imager.host.loopdev import mounted
from imager.host.run import ToolFailed, run
from imager.settings import Settings

LABEL = "IMAGER-DATA"
KIT, SPOOL, CA = "kit", "spool", "station-ca.pem"
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
# The outbox's spool format (imager.agent.outbox, which this layer does not import).
SUFFIX, SENT = ".event.json", "sent"
SAVED = "usb-spools"          # <data dir>/usb-spools/<stick>: a spool while its stick is written


def probe(part: str) -> dict[str, str]:
    """`blkid -p -o export` of one partition (LABEL, TYPE...), {} if blank."""
    result = run(["blkid", "-p", "-o", "export", part], check=False)
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


def find(device: str, settings: Settings) -> str | None:
    """The data partition of the stick `device` (the disk, or that partition): by
    its filesystem's label, or by its GPT name when the filesystem is damaged
    (then mounting it fails, and nothing overwrites it)."""
    name = os.path.basename(os.path.realpath(device))
    disk = devices.disk_of(name, settings)
    candidates = [name] if disk != name else devices.partitions_of(disk, settings)
    for part in (f"/dev/{p}" for p in candidates):
        found = probe(part)
        if LABEL in (found.get("LABEL"), found.get("PART_ENTRY_NAME")):
            return part
    return None


def mountpoint_of(part: str, settings: Settings) -> Path | None:
    """Where `part` is mounted already (a desktop's automount), if it is."""
    rdev = os.stat(part).st_rdev
    devno = f"{os.major(rdev)}:{os.minor(rdev)}"
    return next((Path(m.mountpoint) for m in devices.read_mounts(settings)
                 if m.devno == devno), None)


@contextmanager
def opened(part: str, settings: Settings, *, read_only: bool = False) -> Iterator[Path]:
    """The data partition's root: where it is mounted already, else mounted for the
    block in a private folder (read-only: the journal still replays) and unmounted."""
    already = mountpoint_of(part, settings)
    if already is not None:
        yield already
        return
    with tempfile.TemporaryDirectory(prefix="imager-stick-") as folder, ExitStack() as stack:
        try:
            root = stack.enter_context(mounted(part, Path(folder), fstype="ext4",
                                               options=("ro",) if read_only else ()))
        except ToolFailed as exc:
            raise UsageError(
                f"impossible de lire la partition de données {part} : elle peut contenir des "
                f"rapports non envoyés / cannot mount the stick's data partition, which may "
                f"hold reports not yet sent ({exc}): repair it on the station (`e2fsck -f "
                f"{part}`) and try again; only to throw its reports away for good, clear the "
                "stick first (`wipefs --all` on the stick)") from exc
        yield root


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


def pending(spool: Path) -> list[Path]:
    """The events in a stick's spool that the station has not acknowledged."""
    return sorted(spool.glob(f"*{SUFFIX}"))


def sent(spool: Path) -> list[Path]:
    """The events the station acknowledged (kept on the stick)."""
    return sorted((spool / SENT).glob(f"*{SUFFIX}"))

