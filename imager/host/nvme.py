"""Where an NVMe namespace sits: its controller and its sibling namespaces (sysfs).

The controller's character device is NOT the namespace name minus "nN":
block devices are named after the NVM subsystem (nvme<subsys>n<nsid>) and
controllers after their own instance (nvme<ctrl>), so with native multipath or
after hot-plugs /dev/nvme0n1 may belong to /dev/nvme1 (see nvme-cli issue
#455). The kernel says it in sysfs:

- a namespace without multipath: /sys/class/block/nvme0n1 is a child of its
  controller's device directory (.../nvme/nvme0/nvme0n1);
- a multipath head: it is a child of the subsystem device
  (.../nvme-subsystem/nvme-subsys0/nvme0n1), which links to every controller
  (nvme-subsys0/nvme0 -> the controller's directory, state in .../state).

Sanitize acts on the whole NVM subsystem and Format NVM may too (FNA), so
`namespaces` lists every namespace block device of the subsystem.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from imager.host import devices as hd
from imager.settings import Settings

_CTRL = re.compile(r"nvme\d+")
_SUBSYS = re.compile(r"nvme-subsys\d+")
_NAMESPACE = re.compile(r"nvme\d+n\d+")  # not nvme0c1n1 (hidden path), not nvme0n1p1


@dataclass(frozen=True)
class NvmeTopology:
    """An NVMe namespace, the controller to send admin commands to, and every
    namespace block device the same NVM subsystem exposes (itself included)."""

    namespace: str                 # /dev/nvme0n1
    controller: str                # /dev/nvme0 (character device)
    namespaces: tuple[str, ...]    # /dev/nvme0n1, /dev/nvme0n2...

    def others(self) -> tuple[str, ...]:
        """The subsystem's namespaces other than this one."""
        return tuple(ns for ns in self.namespaces if ns != self.namespace)


def nvme_topology(path: str, settings: Settings) -> NvmeTopology | None:
    """The NVMe topology of the block device at `path`; None when it is not an
    NVMe namespace (a loop device, a SATA disk, a partition...)."""
    sysname = _sysname(path, settings)
    if sysname is None or not _NAMESPACE.fullmatch(sysname):
        return None
    parent = (settings.sys_root / "class" / "block" / sysname).resolve().parent
    if _SUBSYS.fullmatch(parent.name):
        controllers = _controllers_of(parent)
    elif _CTRL.fullmatch(parent.name):
        controllers = [parent.name]
    else:
        return None
    if not controllers:
        return None
    subsystem = parent if _SUBSYS.fullmatch(parent.name) else _subsystem_of(parent.name, settings)
    dev = settings.dev_root
    return NvmeTopology(namespace=str(dev / sysname), controller=str(dev / controllers[0]),
                        namespaces=tuple(str(dev / n) for n in
                                         _namespaces(subsystem, controllers, settings)))


def _sysname(path: str, settings: Settings) -> str | None:
    """The kernel name of a block device path (follows /dev/disk/by-id links);
    a path that does not exist is taken by its name (a test's sysfs tree)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return os.path.basename(path)
    except OSError:
        return None
    if not stat.S_ISBLK(st.st_mode):
        return None
    devno = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    return hd.sysname_of_devno(devno, settings) or os.path.basename(path)


def _state(ctrl_dir: Path) -> str:
    try:
        return (ctrl_dir / "state").read_text().strip()
    except OSError:
        return "unknown"


def _controllers_of(subsystem: Path) -> list[str]:
    """Controllers linked from a subsystem directory, live ones first."""
    names = sorted((p.name for p in subsystem.iterdir() if _CTRL.fullmatch(p.name)),
                   key=lambda n: int(n[4:]))
    return sorted(names, key=lambda n: _state(subsystem / n) != "live")


def _subsystem_of(controller: str, settings: Settings) -> Path | None:
    """The nvme-subsystem directory that links to `controller`, if any."""
    root = settings.sys_root / "class" / "nvme-subsystem"
    if not root.is_dir():
        return None
    return next((s for s in sorted(root.iterdir()) if (s / controller).exists()), None)


def _namespaces(subsystem: Path | None, controllers: list[str],
                settings: Settings) -> list[str]:
    """Namespace block devices under the subsystem and under each of its controllers."""
    dirs = [settings.sys_root / "class" / "nvme" / c for c in controllers]
    if subsystem is not None:
        dirs.append(subsystem)
        dirs += [subsystem / p.name for p in subsystem.iterdir() if _CTRL.fullmatch(p.name)]
    found = {p.name for d in dirs if d.is_dir() for p in d.iterdir()
             if _NAMESPACE.fullmatch(p.name)}
    block = settings.sys_root / "class" / "block"
    return sorted((n for n in found if (block / n).exists()), key=_ns_key)


def _ns_key(name: str) -> tuple[int, int]:
    subsys, nsid = name[4:].split("n")
    return int(subsys), int(nsid)
