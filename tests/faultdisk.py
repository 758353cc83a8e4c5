"""FaultDisk: a real block device (a loop device) that fails like a dying drive.

The loop device's backing file is ``disk.img`` served by tests/faultfs.py, a FUSE
daemon running as a child process.  I/O that touches a bad extent fails with
EIO; ``pull()`` kills the daemon with SIGKILL, after which every I/O on the loop
device fails (EIO), as if the drive had been pulled out of its dock.

    from faultdisk import FaultDisk

    with FaultDisk.start(tmp_path, 64 << 20, bad=[(8 << 20, 4096)]) as disk:
        fd = os.open(disk.device, os.O_RDWR | os.O_DIRECT)
        ...                                   # EIO around 8 MiB, fine elsewhere
        disk.set_faults(bad=[(0, 512)])       # change the bad extents at runtime
        disk.pull()                           # the drive is gone
    # close() (or leaving the with-block) detaches the loop device, kills the
    # daemon and lazily unmounts, even after a failed test.

What the kernel does with it (Linux 6.x, loop in its default buffered mode,
libfuse 3.14; asserted by tests/test_faultdisk.py):

* a FUSE EIO on the backing file comes back as EIO from write(2)/read(2) on
  the loop device (O_DIRECT or not): the whole request fails, including when
  the kernel split it and only one piece hit the bad extent;
* the FUSE mount never uses the writeback cache, so the error is reported by the
  write itself, not at fsync;
* disk.img is opened with FOPEN_DIRECT_IO by default (``direct_io=True``), so no
  page cache sits between the loop driver and the daemon: bad extents apply to
  reads immediately and, after ``pull()``, reads of data read earlier fail too.
  With ``direct_io=False`` the FUSE file has a write-through page cache; the
  helper then evicts it (posix_fadvise DONTNEED) on ``set_faults()``/``pull()``;
* after ``pull()`` the FUSE connection is aborted: the daemon's requests fail
  with ENOTCONN, which the loop driver reports as EIO (and the kernel logs
  "I/O error, dev loopN").  The loop device itself stays until ``close()``.

Needs root, /dev/fuse, /dev/loop-control, losetup, and mfusepy in the running
interpreter (the daemon is started with sys.executable).
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

FAULTFS = Path(__file__).with_name("faultfs.py")

Extent = tuple[int, int]


def missing_requirements() -> str | None:
    """Why a FaultDisk cannot be created here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (FUSE mount + loop devices)"
    if not Path("/dev/loop-control").exists():
        return "needs /dev/loop-control"
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC))
    except OSError as exc:
        return f"needs a usable /dev/fuse ({exc.strerror})"
    if shutil.which("losetup") is None:
        return "needs the tool 'losetup'"
    os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")     # as faultfs.py loads it
    try:
        import mfusepy  # noqa: F401  (also loads libfuse)
    except Exception as exc:  # ImportError, or OSError/EnvironmentError: no libfuse
        return f"needs mfusepy with libfuse ({exc})"
    return None


def _unescape_mount(field: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(field):
        code = field[i + 1:i + 4]
        if field[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def is_mounted(path: str | os.PathLike[str]) -> bool:
    """True if `path` is a mount point, even a dead FUSE one (where
    os.path.ismount() says False because stat() fails with ENOTCONN)."""
    target = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as fh:
            for line in fh:
                fields = line.split(" ")
                if len(fields) > 4 and _unescape_mount(fields[4]) == target:
                    return True
    except OSError:
        return os.path.ismount(target)
    return False


def loop_backing_file(device: str) -> str | None:
    """The backing file of a loop device, or None when it is detached."""
    sysfs = Path("/sys/block") / Path(device).name / "loop" / "backing_file"
    try:
        return sysfs.read_text(encoding="utf-8", errors="surrogateescape").strip() or None
    except OSError:
        return None


def _pdeathsig() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


class FaultDiskError(RuntimeError):
    pass


class FaultDisk:
    """A loop device over a FUSE-served file with injectable I/O errors.

    Attributes: ``device`` (/dev/loopN), ``mountpoint``, ``image``
    (MOUNT/disk.img), ``backing`` (the sparse file holding the data, readable
    directly to check what reached the "platters"), ``size``, ``proc`` (the
    daemon's Popen), ``workdir``.
    """

    def __init__(self, workdir: str | os.PathLike[str], size: int,
                 bad: Iterable[Extent] = (), *, mode: str = "both",
                 fail_fsync: bool = False, direct_io: bool = True, write_rate: int = 0,
                 timeout: float = 15.0, verbose: int = 0, attach: bool = True) -> None:
        if size <= 0 or size % 512:
            raise ValueError("size must be a positive multiple of 512")
        self.workdir = Path(workdir)
        self.size = size
        self.direct_io = direct_io
        self.timeout = timeout
        self.verbose = verbose
        self.attach = attach
        self.mountpoint = self.workdir / "mnt"
        self.image = self.mountpoint / "disk.img"
        self.backing = self.workdir / "backing.img"
        self.control = self.workdir / "control.json"
        self.logfile = self.workdir / "faultfs.log"
        self.device: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.pulled = False
        self._faults: dict[str, Any] = {
            "generation": 0, "bad": [list(map(int, e)) for e in bad],
            "mode": mode, "fail_fsync": bool(fail_fsync), "write_rate": int(write_rate)}
        self._cache_fd: int | None = None
        self._closed = False

    # -- construction --------------------------------------------------------
    @classmethod
    def start(cls, tmp_path: str | os.PathLike[str], size: int,
              bad: Iterable[Extent] = (), *, name: str = "faultdisk",
              **kwargs: Any) -> FaultDisk:
        """Mount faultfs under tmp_path/NAME and attach a loop device over it.

        kwargs: mode ("both" | "reads" | "writes": which I/O the bad extents
        fail), fail_fsync, direct_io (default True), write_rate (bytes/s: a
        slow drive, each write request sleeps its share), timeout (seconds to wait
        for the mount), verbose (0/1/2: daemon log in WORKDIR/faultfs.log),
        attach (False: mount only, no loop device).
        """
        base = Path(tmp_path)
        workdir = base / name
        n = 1
        while workdir.exists():
            n += 1
            workdir = base / f"{name}{n}"
        disk = cls(workdir, size, bad, **kwargs)
        try:
            disk._launch()
        except BaseException:
            disk.close()
            raise
        return disk

    def _launch(self) -> None:
        self.mountpoint.mkdir(parents=True)
        argv = [sys.executable, str(FAULTFS), str(self.mountpoint), "--size", str(self.size),
                "--backing", str(self.backing), "--control", str(self.control)]
        for off, length in self._faults["bad"]:
            argv += ["--bad", f"{off}:{length}"]
        if self._faults["mode"] == "reads":
            argv.append("--bad-reads-only")
        elif self._faults["mode"] == "writes":
            argv.append("--bad-writes-only")
        elif self._faults["mode"] != "both":
            raise ValueError(f"mode must be both, reads or writes, not {self._faults['mode']!r}")
        if self._faults["fail_fsync"]:
            argv.append("--fail-fsync")
        if not self.direct_io:
            argv.append("--no-direct-io")
        if self._faults["write_rate"]:
            argv += ["--write-rate", str(self._faults["write_rate"])]
        argv += ["-v"] * self.verbose
        atexit.register(self.close)
        with open(self.logfile, "wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         close_fds=True, start_new_session=True,
                                         preexec_fn=_pdeathsig)
        self._wait_ready()
        if not self.direct_io:
            self._cache_fd = os.open(self.image, os.O_RDONLY | os.O_CLOEXEC)
        if self.attach:
            res = subprocess.run(["losetup", "--find", "--show", str(self.image)],
                                 capture_output=True, text=True)
            if res.returncode != 0 or not res.stdout.strip().startswith("/dev/"):
                raise FaultDiskError(f"losetup --find --show {self.image} failed "
                                     f"(rc={res.returncode}): {res.stderr.strip()}")
            self.device = res.stdout.strip()

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise FaultDiskError(f"faultfs exited with status {rc} before the mount was "
                                     f"ready:\n{self.log_text()}")
            if os.path.ismount(self.mountpoint) and os.path.exists(self.image):
                return
            if time.monotonic() > deadline:
                raise FaultDiskError(f"faultfs did not mount {self.mountpoint} within "
                                     f"{self.timeout:.0f}s:\n{self.log_text()}")
            time.sleep(0.02)

    # -- state ---------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def log_text(self) -> str:
        try:
            return self.logfile.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    # -- runtime control --------------------------------------------------------
    def set_faults(self, bad: Iterable[Extent] | None = None, *, mode: str | None = None,
                   fail_fsync: bool | None = None, write_rate: int | None = None,
                   rot: Iterable[Extent] | None = None,
                   timeout: float = 5.0) -> dict[str, Any]:
        """Change the bad extents (and/or mode, fail_fsync, write_rate, rot) of the daemon;
        returns once the change is live, with the daemon's counters (dict with
        generation, bad, mode, reads, writes, read_errors, write_errors,
        bytes_read, bytes_written)."""
        if not self.alive:
            raise FaultDiskError("the faultfs daemon is not running (pulled or closed)")
        spec = dict(self._faults)
        spec["generation"] = self._faults["generation"] + 1
        if bad is not None:
            spec["bad"] = [[int(off), int(length)] for off, length in bad]
        if mode is not None:
            if mode not in ("both", "reads", "writes"):
                raise ValueError(f"mode must be both, reads or writes, not {mode!r}")
            spec["mode"] = mode
        if fail_fsync is not None:
            spec["fail_fsync"] = bool(fail_fsync)
        if write_rate is not None:
            spec["write_rate"] = int(write_rate)
        if rot is not None:                    # read back with every bit flipped
            spec["rot"] = [[int(off), int(length)] for off, length in rot]
        tmp = self.control.with_name(self.control.name + ".tmp")
        tmp.write_text(json.dumps(spec), encoding="utf-8")
        os.replace(tmp, self.control)
        self._faults = spec
        ack = self._wait_ack(spec["generation"], timeout)
        self._evict_cache()
        return ack

    def set_bad(self, *extents: Extent) -> dict[str, Any]:
        """set_faults(bad=extents); no arguments heals the disk."""
        return self.set_faults(bad=extents)

    def stats(self) -> dict[str, Any]:
        """The daemon's request/error counters (approximate under concurrency)."""
        return self.set_faults()

    def _wait_ack(self, generation: int, timeout: float) -> dict[str, Any]:
        applied = self.control.with_name(self.control.name + ".applied")
        deadline = time.monotonic() + timeout
        while True:
            try:
                ack = json.loads(applied.read_text(encoding="utf-8"))
                if ack.get("generation", -1) >= generation:
                    return ack
            except (OSError, ValueError):
                pass
            if not self.alive:
                raise FaultDiskError(f"faultfs died:\n{self.log_text()}")
            if time.monotonic() > deadline:
                raise FaultDiskError(f"faultfs did not apply control generation {generation} "
                                     f"within {timeout}s:\n{self.log_text()}")
            time.sleep(0.005)

    def _evict_cache(self) -> None:
        # Only with direct_io=False: drop the FUSE file's (clean, write-through)
        # page cache so that reads go to the daemon again.
        if self._cache_fd is not None:
            try:
                os.posix_fadvise(self._cache_fd, 0, 0, os.POSIX_FADV_DONTNEED)
            except OSError:
                pass

    # -- failure -------------------------------------------------------------
    def pull(self) -> None:
        """The drive vanishes: SIGKILL the daemon. Every further I/O on the loop
        device fails (the FUSE connection is aborted: ENOTCONN -> EIO)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.pulled = True
        self._evict_cache()

    # -- teardown ------------------------------------------------------------
    def close(self) -> None:
        """Detach the loop device, stop the daemon, lazily unmount. Idempotent;
        never raises for cleanup problems it can work around."""
        if self._closed:
            return
        self._closed = True
        problems: list[str] = []
        if self.device is not None:
            problems += self._detach()
        if self._cache_fd is not None:
            try:
                os.close(self._cache_fd)
            except OSError:
                pass
            self._cache_fd = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()  # libfuse: clean exit and unmount
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        if is_mounted(self.mountpoint):
            problems += self._unmount()
        try:
            atexit.unregister(self.close)
        except Exception:
            pass
        if problems:
            raise FaultDiskError("FaultDisk cleanup: " + "; ".join(problems))

    def _detach(self) -> list[str]:
        assert self.device is not None
        dev, problems = self.device, []
        if loop_backing_file(dev) is not None:
            res = subprocess.run(["losetup", "-d", dev], capture_output=True, text=True)
            if res.returncode != 0 and loop_backing_file(dev) is not None:
                problems.append(f"losetup -d {dev}: {res.stderr.strip()}")
            # If something still holds the device open, the kernel only marks it
            # for autoclear: it goes away at the last close.
            deadline = time.monotonic() + 5
            while loop_backing_file(dev) is not None and time.monotonic() < deadline:
                time.sleep(0.02)
            if loop_backing_file(dev) is not None:
                problems.append(f"{dev} still attached (an fd on it is still open?)")
        self.device = None if not problems else self.device
        return problems

    def _unmount(self) -> list[str]:
        mnt = str(self.mountpoint)
        attempts = []
        if shutil.which("fusermount3"):
            attempts.append(["fusermount3", "-u", "-z", mnt])
        attempts.append(["umount", "-l", mnt])
        errors = []
        for argv in attempts:
            res = subprocess.run(argv, capture_output=True, text=True)
            if not is_mounted(mnt):
                return []
            errors.append(f"{' '.join(argv)}: rc={res.returncode} {res.stderr.strip()}")
        return errors

    # -- context manager -----------------------------------------------------
    def __enter__(self) -> FaultDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "pulled" if self.pulled else (
            "running" if self.alive else "dead")
        return (f"FaultDisk(device={self.device!r}, size={self.size}, "
                f"bad={self._faults['bad']!r}, mode={self._faults['mode']!r}, {state})")


def fault_disk(tmp_path: str | os.PathLike[str], size: int,
               bad: Sequence[Extent] = (), **kwargs: Any) -> FaultDisk:
    """Alias of FaultDisk.start()."""
    return FaultDisk.start(tmp_path, size, bad, **kwargs)


__all__ = ["FaultDisk", "FaultDiskError", "fault_disk", "is_mounted", "loop_backing_file",
           "missing_requirements"]
