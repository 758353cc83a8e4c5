"""After a verified deployment: fit the image to its disk and make the machine
its own.

`customise(device, settings=..., hostname=..., grow=...)` works on a whole disk
that just received a raw disk image (GPT or MBR):

1. the safety guard must accept the disk (imager.erase.guard.check);
2. a GPT's backup header is moved to the end of the disk (in every grow mode:
   a GPT without it there is damaged), then, with grow="now", the last
   partition grows to the end of the disk and an ext2/3/4 filesystem on it
   with it (imaging.partitions); grow="first-boot" checks that the image does
   it itself (systemd-repart, growpart/growroot), grow="no" leaves it;
3. the root filesystem (the ext2/3/4 partition holding /etc/os-release) is
   mounted on a private temporary directory and: /etc/hostname and the
   127.0.1.1 line of /etc/hosts get the hostname; /etc/machine-id is emptied
   (systemd makes a new one at first boot) and a copy in
   /var/lib/dbus/machine-id removed (a symlink to it is kept); the SSH host
   keys are removed and a oneshot unit (imager-ssh-hostkeys.service,
   `ssh-keygen -A` before ssh.service) regenerates them at first boot, unless
   the image has a unit of its own for that. It is always unmounted.

Paths inside the image are resolved with the image's root as "/": an absolute
symlink in the image never leads out to the station's own files. Running it
twice leaves the disk as running it once; the second result says what was
already done.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imager.erase import guard
from imager.errors import ImagerError, UsageError
from imager.host.run import PACKAGES, run
from imager.imaging import partitions as pt
from imager.settings import Settings

GROW_MODES = ("now", "first-boot", "no")
# Tools customise() runs, with the Debian package of each.
TOOLS = ("sfdisk", "partx", "blkid", "mount", "umount", "e2fsck", "resize2fs", "dumpe2fs")
SSH_UNIT = "imager-ssh-hostkeys.service"
SSH_UNIT_TEXT = """\
# Installed by imager after deployment: every machine gets its own SSH host keys.
[Unit]
Description=Generate the SSH host keys this machine does not have yet
Before=ssh.service sshd.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
"""
WANTS_DIR = "/etc/systemd/system/multi-user.target.wants"
# Units of other distributions that create missing SSH host keys at boot.
KEYGEN_UNITS = ("sshd-keygen@.service", "sshdgenkeys.service",
                "regenerate_ssh_host_keys.service")
UNIT_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")
REPART_DIRS = ("/etc/repart.d", "/usr/local/lib/repart.d", "/usr/lib/repart.d")
SYSTEMD = ("/usr/lib/systemd/systemd", "/lib/systemd/systemd")
GROWROOT = "/usr/share/initramfs-tools/scripts/local-bottom/growroot"
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_PREFIX = re.compile(r"([a-z0-9]([a-z0-9-]*[a-z0-9])?)?")
_MAX_SYMLINKS = 40


class CustomiseError(ImagerError):
    """The deployed system could not be customised; the message names the
    device or file and what to do."""


@dataclass
class AfterResult:
    """What customise() did, for the deployment record."""

    grown: str | None            # "partition 2: 1.0 GiB -> 3.9 GiB; ext4 resized", or None
    hostname: str | None
    machine_id_reset: bool
    ssh_keys_reset: bool
    steps: list[str] = field(default_factory=list)      # what was done (English)
    warnings: list[str] = field(default_factory=list)


def hostname_for(asset_tag: str, *, prefix: str = "pc") -> str:
    """A valid RFC 1123 hostname (one label) from an asset tag:
    "RS05-0042" -> "pc-rs05-0042". Accents are dropped, any other character
    than a letter or a digit separates; UsageError if nothing usable is left
    or the name is too long."""
    if not _PREFIX.fullmatch(prefix):
        raise UsageError(f"hostname prefix {prefix!r} is not valid: use lowercase letters, "
                         "digits and inner '-' only (e.g. 'pc')")
    plain = "".join(c for c in unicodedata.normalize("NFKD", asset_tag)
                    if not unicodedata.combining(c))
    tag = re.sub(r"[^a-z0-9]+", "-", plain.lower()).strip("-")
    if not tag:
        raise UsageError(f"asset tag {asset_tag!r} has no letter or digit to make a "
                         "hostname from: check the tag on the machine's label")
    name = f"{prefix}-{tag}" if prefix else tag
    return check_hostname(name, origin=f" (from asset tag {asset_tag!r})")


def check_hostname(name: str, *, origin: str = "") -> str:
    """`name` if it is a valid single-label hostname, else UsageError."""
    if len(name) > 63:
        raise UsageError(f"hostname {name!r}{origin} has {len(name)} characters, 63 at most: "
                         "use a shorter asset tag or prefix")
    if not _LABEL.fullmatch(name) or name.isdigit():
        raise UsageError(f"hostname {name!r}{origin} is not valid: use lowercase letters, "
                         "digits and inner '-', not only digits (hostname_for() makes one "
                         "from an asset tag)")
    return name


def customise(device: str, *, settings: Settings, hostname: str | None,
              grow: str = "now") -> AfterResult:
    """Fit the freshly deployed image on `device` (a whole disk) to the disk and
    give the installed system its own identity; see the module docstring.
    grow: "now", "first-boot" or "no". Raises RefusedDevice when the guard
    refuses `device`, UsageError for bad arguments, ImagerError subclasses
    naming the device when a step fails; nothing stays mounted."""
    if grow not in GROW_MODES:
        raise UsageError(f"grow={grow!r}: choose one of {', '.join(GROW_MODES)}")
    if hostname is not None:
        check_hostname(hostname)
    _need_tools()
    # The deployment just closed the disk it wrote: udev probes it now (blkid, the
    # partitions), and the guard would refuse a disk udev holds open (seen on the
    # live system: "open by another program: (udev-worker)").
    pt.settle()
    disk = guard.check(device, settings).sysname
    assert disk is not None
    res = AfterResult(grown=None, hostname=None, machine_id_reset=False, ssh_keys_reset=False)
    table, changed = _fit_table(device, disk, settings, res, grow=grow)
    scans = pt.scans_partitions(disk, settings)
    try:
        parts = pt.reread(device, disk, table, settings)
        types = {n: pt.fs_type(k.path) for n, k in parts.items()}
        if grow == "now":
            _grow_fs(table, parts, types, changed, res)
        with _mounted_root(device, parts, types) as (root, number, system):
            res.steps.append(f"root filesystem: partition {number} ({system})")
            _customise_root(root, table, res, hostname=hostname, grow=grow)
    finally:
        os.sync()
        if not scans:           # leave a loop device without partitions, as found
            pt.forget_partitions(device)
    return res


def after_steps(device: str, *, settings: Settings, hostname: str | None,
                grow: str = "now") -> dict[str, Any]:
    """`customise` for a deployment record: what was done, or {"error": why};
    never raises for a failed step (the deployment then records it)."""
    try:
        done = customise(device, settings=settings, hostname=hostname, grow=grow)
    except ImagerError as exc:
        return {"error": str(exc)}
    return dataclasses.asdict(done)


def _need_tools() -> None:
    missing = sorted({PACKAGES[tool] for tool in TOOLS if shutil.which(tool) is None})
    if missing:
        raise CustomiseError("customising a deployed disk needs tools this station lacks: "
                             f"apt-get install {' '.join(missing)}")


# --- the disk: partition table and filesystem --------------------------------------


def _fit_table(device: str, disk: str, settings: Settings, res: AfterResult, *,
               grow: str) -> tuple[pt.Table, tuple[pt.Partition, pt.Partition] | None]:
    """Fix a GPT's backup header; with grow="now" grow the last partition.
    Return the table and (old, new) last partition if it grew."""
    table = pt.read_table(device)
    sectors = pt.disk_sectors(disk, table, settings)
    if table.backup_misplaced(sectors):
        pt.relocate_backup(device)
        table = pt.read_table(device)
        res.steps.append(f"GPT backup header moved to the end of {device}")
    last = table.last()
    if last is None:
        return table, None
    if grow != "now" or not pt.room_to_grow(table, sectors):
        size = _size(last.size * table.sector_size)
        why = "fills the disk" if grow == "now" else f"left as it is (grow={grow!r})"
        res.steps.append(f"partition {last.number} ({size}) {why}")
        return table, None
    if table.extended():
        res.warnings.append(f"{device}: the last partition is in an MBR extended partition "
                            "and is not grown here: left to first boot")
        return table, None
    new = pt.grow_last(device, table)
    grown = new.last()
    assert grown is not None
    return new, (last, grown)


def _grow_fs(table: pt.Table, parts: dict[int, pt.KernelPartition],
             types: dict[int, str | None], changed: tuple[pt.Partition, pt.Partition] | None,
             res: AfterResult) -> None:
    """Grow the last partition's ext2/3/4 filesystem; say what grew in res.grown."""
    last = table.last()
    if last is None:
        return
    fstype = types.get(last.number)
    ss = table.sector_size
    what = f"partition {last.number}: "
    if changed:
        what += f"{_size(changed[0].size * ss)} -> {_size(changed[1].size * ss)}; "
    if fstype not in pt.EXT_TYPES:
        res.warnings.append(f"partition {last.number} holds {fstype or 'no known filesystem'}"
                            ": its filesystem is left to first boot (only ext2/3/4 are "
                            "grown here)")
        res.grown = what + f"{fstype or 'filesystem'} left to first boot" if changed else None
        return
    sizes = pt.grow_ext(parts[last.number].path, partition_bytes=last.size * ss)
    if sizes is None:
        res.steps.append(f"{fstype} on partition {last.number} fills its partition")
        res.grown = what + f"{fstype} already filled it" if changed else None
        return
    fs = f"{fstype} resized" if changed else \
        f"{fstype} {_size(sizes[0])} -> {_size(sizes[1])} (the partition already filled the disk)"
    res.grown = what + fs
    res.steps.append(f"grown: {res.grown}")


def _size(n: int) -> str:
    gib = n / (1 << 30)
    return f"{gib:.1f} GiB" if gib >= 1 else f"{n / (1 << 20):.0f} MiB"


# --- the root filesystem --------------------------------------------------------------


@contextmanager
def _mounted_root(device: str, parts: dict[int, pt.KernelPartition],
                  types: dict[int, str | None]) -> Iterator[tuple[Path, int, str]]:
    """Mount the image's root filesystem read-write on a private temporary
    directory; yield (mountpoint, partition number, system name). Always
    unmounted and removed afterwards."""
    mnt = Path(tempfile.mkdtemp(prefix="imager-after-"))
    try:
        for number in sorted(parts, reverse=True):       # the root is usually last
            if types[number] not in pt.EXT_TYPES:
                continue
            system = _probe_root(parts[number].path, types[number] or "", mnt)
            if system is not None:
                yield mnt, number, system
                return
        found = ", ".join(f"{n}: {t or 'unknown'}" for n, t in sorted(types.items()))
        raise CustomiseError(f"no ext2/3/4 partition of {device} holds /etc/os-release "
                             f"(partitions {found or 'none'}): hostname, machine-id and SSH "
                             "keys were not set; deploy an image with an ext4 root")
    finally:
        if os.path.ismount(mnt):
            _unmount(mnt)
        mnt.rmdir()


def _probe_root(path: str, fstype: str, mnt: Path) -> str | None:
    """Mount `path` on `mnt`: if it holds /etc/os-release, leave it mounted
    read-write and return the system's name, else unmount it and return None."""
    opts = "nosuid,nodev,noexec"
    run(["mount", "-t", fstype, "-o", f"ro,{opts}", path, str(mnt)])
    release = _inside(mnt, "/etc/os-release")
    if not release.is_file():
        _unmount(mnt)
        return None
    run(["mount", "-o", f"remount,rw,{opts}", str(mnt)])
    return os_release_name(release.read_text(encoding="utf-8", errors="replace"))


def _unmount(mnt: Path) -> None:
    for _ in range(5):
        if run(["umount", str(mnt)], check=False).ok:
            return
        time.sleep(0.2)
    run(["umount", "--lazy", str(mnt)], check=False)
    raise CustomiseError(f"{mnt} stayed busy and was unmounted lazily: a process still "
                         "uses the deployed root filesystem; stop it before unplugging")


def os_release_name(text: str) -> str:
    """PRETTY_NAME (else NAME) of an os-release file, unquoted."""
    fields = dict(ln.split("=", 1) for ln in text.splitlines() if "=" in ln)
    name = fields.get("PRETTY_NAME") or fields.get("NAME") or "unnamed system"
    return name.strip().strip("\"'")


def _inside(root: Path, path: str) -> Path:
    """Where `path`, as the image sees it, is under `root`: the image's symlinks
    are followed with `root` as "/", so none of them leads out of it."""
    todo = [p for p in path.split("/") if p not in ("", ".")]
    here: list[str] = []
    hops = 0
    while todo:
        name = todo.pop(0)
        if name == "..":
            here = here[:-1]
            continue
        node = root.joinpath(*here, name)
        if not node.is_symlink():
            here.append(name)
            continue
        hops += 1
        if hops > _MAX_SYMLINKS:
            raise CustomiseError(f"{path} in the deployed image: too many levels of "
                                 "symbolic links; fix the image")
        target = os.readlink(node)
        here = [] if target.startswith("/") else here
        todo = [p for p in target.split("/") if p not in ("", ".")] + todo
    return root.joinpath(*here)


def _customise_root(root: Path, table: pt.Table, res: AfterResult, *,
                    hostname: str | None, grow: str) -> None:
    _set_hostname(root, hostname, res)
    _reset_machine_id(root, res)
    _reset_ssh_keys(root, res)
    if grow == "first-boot":
        _check_first_boot(root, table, res)


def _read(root: Path, path: str) -> str | None:
    """The text of a file in the image, None if it is missing."""
    target = _inside(root, path)
    return target.read_text(encoding="utf-8", errors="replace") if target.is_file() else None


def _write(root: Path, path: str, data: bytes, *, mode: int) -> bool:
    """Make `path` in the image a regular file holding `data` (a symlink there
    is replaced, new files get `mode`); False if it already was."""
    folder, name = path.rsplit("/", 1)
    target = _inside(root, folder or "/") / name
    try:
        if target.is_symlink():
            target.unlink()
        elif target.is_file() and target.read_bytes() == data:
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise CustomiseError(f"cannot write {path} in the deployed image ({exc.strerror}): "
                             "check the image's root filesystem") from exc
    return True


def hosts_with(text: str, hostname: str) -> str:
    """/etc/hosts text with one `127.0.1.1 hostname` line: in place of the
    existing 127.0.1.1 line(s), else after the 127.0.0.1 line, else first."""
    entry = f"127.0.1.1\t{hostname}"
    lines = text.splitlines()
    at = [i for i, ln in enumerate(lines) if ln.split()[:1] == ["127.0.1.1"]]
    if at:
        kept = [ln for i, ln in enumerate(lines) if i not in at[1:]]
        kept[at[0]] = entry
        return "\n".join(kept) + "\n"
    local = [i for i, ln in enumerate(lines) if ln.split()[:1] == ["127.0.0.1"]]
    where = local[0] + 1 if local else 0
    return "\n".join(lines[:where] + [entry] + lines[where:]) + "\n"


def _set_hostname(root: Path, hostname: str | None, res: AfterResult) -> None:
    old = (_read(root, "/etc/hostname") or "").strip() or "none"
    if hostname is None:
        res.steps.append(f"hostname left as the image has it ({old})")
        return
    changed = _write(root, "/etc/hostname", f"{hostname}\n".encode(), mode=0o644)
    hosts = hosts_with(_read(root, "/etc/hosts") or "127.0.0.1\tlocalhost\n", hostname)
    changed |= _write(root, "/etc/hosts", hosts.encode(), mode=0o644)
    res.hostname = hostname
    res.steps.append(f"hostname {hostname} set in /etc/hostname and /etc/hosts (was {old})"
                     if changed else f"hostname already {hostname}")


def _reset_machine_id(root: Path, res: AfterResult) -> None:
    """Empty /etc/machine-id (first boot makes a new one); drop D-Bus's copy."""
    emptied = _write(root, "/etc/machine-id", b"", mode=0o444)
    res.steps.append("/etc/machine-id emptied: a new one is made at first boot" if emptied
                     else "/etc/machine-id already empty")
    dbus = _inside(root, "/var/lib/dbus") / "machine-id"
    if dbus.is_file() and not dbus.is_symlink():
        dbus.unlink()
        res.steps.append("/var/lib/dbus/machine-id removed")
    res.machine_id_reset = True


def _reset_ssh_keys(root: Path, res: AfterResult) -> None:
    """Remove the SSH host keys and make sure first boot makes new ones."""
    ssh = _inside(root, "/etc/ssh")
    if not ssh.is_dir():
        res.steps.append("no /etc/ssh in the image: no SSH host keys to reset")
        return
    keys = sorted(p for p in ssh.glob("ssh_host_*") if p.is_symlink() or p.is_file())
    for key in keys:
        key.unlink()
    res.steps.append("SSH host keys removed: " + ", ".join(k.name for k in keys) if keys
                     else "no SSH host keys in the image")
    if not any(_inside(root, p).is_file() for p in SYSTEMD):
        res.warnings.append("the image has no systemd: nothing regenerates the SSH host "
                            "keys at first boot; the image must run 'ssh-keygen -A' itself")
        return
    res.steps.append(f"SSH host keys are generated at first boot by {_keygen_unit(root)}")
    res.ssh_keys_reset = True


def _keygen_unit(root: Path) -> str:
    """The image's own unit that makes missing host keys, else ours, installed."""
    for unit in KEYGEN_UNITS:
        if any((_inside(root, d) / unit).is_file() for d in UNIT_DIRS):
            return unit
    _write(root, f"/etc/systemd/system/{SSH_UNIT}", SSH_UNIT_TEXT.encode(), mode=0o644)
    wants = _inside(root, WANTS_DIR)
    wants.mkdir(parents=True, exist_ok=True)
    link, target = wants / SSH_UNIT, f"/etc/systemd/system/{SSH_UNIT}"
    if not (link.is_symlink() and os.readlink(link) == target):
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(target, link)
    return f"{SSH_UNIT} (enabled in multi-user.target)"


# --- growing at first boot ---------------------------------------------------------------


def _check_first_boot(root: Path, table: pt.Table, res: AfterResult) -> None:
    """Say how the image grows its root at first boot, or warn that it does not."""
    repart = sorted(str(p.relative_to(root)) for d in REPART_DIRS
                    for p in _inside(root, d).glob("*.conf"))
    growpart = _inside(root, "/usr/bin/growpart").is_file() and (
        _inside(root, GROWROOT).is_file()
        or "growpart" in (_read(root, "/etc/cloud/cloud.cfg") or ""))
    if repart and table.label == "gpt":
        res.steps.append(f"growing left to first boot: systemd-repart ({', '.join(repart)})")
    elif growpart:
        res.steps.append("growing left to first boot: growpart (cloud-init or growroot)")
    else:
        last = table.last()
        size = _size(last.size * table.sector_size) if last else "?"
        res.warnings.append(f"grow='first-boot' but the image grows nothing at first boot "
                            f"(no systemd-repart configuration on a GPT, no growpart): the "
                            f"last partition stays at {size}; deploy with grow='now'")
