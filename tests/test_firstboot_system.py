"""The first boot for real in a Debian 13 root: account, password hash, groups,
hostname, the unit disabled after, a second run doing nothing.

The root is a cached `mmdebstrap --variant=minbase` of trixie with python3 and
systemd (what the first boot needs from the desktop image), extracted afresh for
each test; the profile's package is installed in it with dpkg, then the shipped
first-boot program runs in it with `chroot`. This module also provides that
root to tests/test_profile_package.py (its upgrade test).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import need

ROOTS_CACHE = Path(os.environ.get("IMAGER_TEST_ROOTS") or "/var/cache/imager-test-roots")
# Everything that decides the root's content: its hash names the cached tar.
ROOT_RECIPE = {
    "suite": "trixie",
    "variant": "minbase",
    "include": ["python3", "systemd", "init-system-helpers", "passwd"],
    "mirrors": [
        "deb http://deb.debian.org/debian trixie main",
        "deb http://deb.debian.org/debian trixie-updates main",
        "deb http://deb.debian.org/debian-security trixie-security main",
    ],
    "excludes": ["/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*",
                 "/usr/share/info/*"],
}


def root_tar() -> Path:
    """The cached tar of the test root, built first (a few minutes) if missing."""
    need(os.geteuid() == 0, "a Debian root needs root (mmdebstrap --mode=root, chroot)")
    need(shutil.which("mmdebstrap") is not None, "needs mmdebstrap (see scripts/install)")
    key = hashlib.sha256(json.dumps(ROOT_RECIPE, sort_keys=True).encode()).hexdigest()[:16]
    ROOTS_CACHE.mkdir(parents=True, exist_ok=True)
    tar = ROOTS_CACHE / f"{ROOT_RECIPE['suite']}-{ROOT_RECIPE['variant']}-{key}.tar"
    with open(ROOTS_CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not tar.is_file():
            _build(tar)
    return tar


def _build(tar: Path) -> None:
    partial = tar.with_suffix(f".partial-{os.getpid()}")
    argv = ["mmdebstrap", "--mode=root", f"--variant={ROOT_RECIPE['variant']}",
            "--format=tar", "--aptopt=APT::Install-Recommends \"false\"",
            f"--include={','.join(ROOT_RECIPE['include'])}",
            *[f"--dpkgopt=path-exclude={p}" for p in ROOT_RECIPE["excludes"]],
            str(ROOT_RECIPE["suite"]), str(partial), *ROOT_RECIPE["mirrors"]]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise RuntimeError(f"mmdebstrap of the test root failed:\n{tail}")
    os.rename(partial, tar)


@contextmanager
def debian_root(base: Path) -> Iterator[Path]:
    """A fresh copy of the cached trixie root under `base`; removed afterwards
    (never while something is mounted in it)."""
    root = base / "root"
    root.mkdir()
    with tarfile.open(root_tar()) as tf:
        tf.extractall(root, filter="fully_trusted")
    try:
        yield root
    finally:
        mounted = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                   if line.split()[1].startswith(str(root))]
        if mounted:
            raise RuntimeError(f"still mounted in the test root, not removed: {mounted}")
        shutil.rmtree(root)


@pytest.fixture
def trixie_root(tmp_path: Path) -> Iterator[Path]:
    """A throwaway Debian 13 root (minbase + python3 + systemd)."""
    with debian_root(tmp_path) as root:
        yield root
