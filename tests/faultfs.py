"""faultfs: a tiny FUSE filesystem that serves one file, ``disk.img``, with bad spots.

Used by the test suite to build a REAL failing drive: a loop device whose backing
file lives on this filesystem.  Any read or write request that overlaps a bad
extent fails with EIO (only that request: the rest of the file keeps working);
killing the daemon with SIGKILL makes every further request fail with ENOTCONN,
which the loop driver reports as EIO, just like a drive pulled out of its dock.

Run as its own process (the parent test kills it)::

    python tests/faultfs.py MOUNTPOINT --size BYTES --backing PATH \
        [--bad OFFSET:LENGTH ...] [--bad-reads-only | --bad-writes-only] \
        [--control FILE] [--no-direct-io] [--fail-fsync] [--write-rate BYTES] [-v|-vv]

The data lives in the sparse file PATH on a real filesystem (os.pread/os.pwrite
on one fd, no copies through Python bytes on the hot path).

Runtime changes: with ``--control FILE`` the daemon polls FILE (every 10 ms,
by mtime/size/inode) and applies the JSON it holds::

    {"generation": 3, "bad": [[offset, length], ...], "mode": "both",
     "fail_fsync": false, "write_rate": 0, "rot": [[offset, length], ...]}

``rot`` extents read back with every bit flipped and no error: a drive that
silently returns wrong data.

``mode`` is "both", "reads" or "writes".  After applying it, the daemon writes
``FILE.applied`` (atomically) with ``{"generation": N, ...counters}``, so a test
can wait until its change is live (tests/faultdisk.py does that).

Kernel-side behaviour (Linux 6.x, libfuse 3.14, checked by tests/test_faultdisk.py):

* the mount never enables the writeback cache (FUSE_CAP_WRITEBACK_CACHE is
  cleared in init), so a failed write fails the write(2) itself, not a later
  fsync;
* by default disk.img is opened with FOPEN_DIRECT_IO, so the kernel keeps no
  page cache for it: every request of the loop driver reaches this daemon, bad
  extents take effect at once for reads too, and after a SIGKILL even data
  that was read before fails.  ``--no-direct-io`` gives the normal
  write-through page cache instead: a bit slower, and pages read before a
  pull (or before an extent was made bad) keep being served from the cache.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import errno
import json
import os
import stat
import sys
import threading
import time
from typing import Any

# libfuse 3 (this file uses its capability bits), even where libfuse 2 is installed
# too (grub-common depends on it): mfusepy would otherwise load the first it finds.
os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
import mfusepy  # noqa: E402

DISK_NAME = "disk.img"
DISK_PATH = "/" + DISK_NAME

# fuse_common.h (libfuse 3.x): capability bits of fuse_conn_info.want/capable.
FUSE_CAP_WRITEBACK_CACHE = 1 << 16

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02

MODES = ("both", "reads", "writes")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_libc.fallocate.restype = ctypes.c_int


def parse_extent(text: str) -> tuple[int, int]:
    """'OFFSET:LENGTH' (ints, 0x.. and K/M/G suffixes accepted) -> (offset, length)."""
    try:
        off_s, len_s = text.split(":", 1)
        extent = (parse_size(off_s), parse_size(len_s))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"bad extent {text!r}: want OFFSET:LENGTH ({exc})") from exc
    if extent[0] < 0 or extent[1] <= 0:
        raise argparse.ArgumentTypeError(f"bad extent {text!r}: offset >= 0, length > 0")
    return extent


def parse_size(text: str) -> int:
    text = text.strip()
    mult = 1
    suffixes = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    if text and text[-1].lower() in suffixes:
        mult = suffixes[text[-1].lower()]
        text = text[:-1]
    return int(text, 0) * mult


def normalise(extents: Any) -> tuple[tuple[int, int], ...]:
    """[(offset, length), ...] -> sorted ((start, end), ...) half-open ranges."""
    out = []
    for ext in extents or ():
        off, length = int(ext[0]), int(ext[1])
        if off < 0 or length <= 0:
            raise ValueError(f"invalid extent {ext!r}")
        out.append((off, off + length))
    return tuple(sorted(out))


class Faults:
    """The current fault configuration; replaced as a whole (atomic under the GIL)."""

    __slots__ = ("bad", "mode", "fail_fsync", "generation", "write_rate", "rot")

    def __init__(self, bad=(), mode: str = "both", fail_fsync: bool = False,
                 generation: int = 0, write_rate: int = 0, rot=()) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.bad = normalise(bad)
        self.mode = mode
        self.fail_fsync = bool(fail_fsync)
        self.generation = int(generation)
        self.write_rate = max(0, int(write_rate))   # bytes/s per request; 0: no limit
        self.rot = normalise(rot)              # read back with every bit flipped, no error

    def hits(self, offset: int, size: int, writing: bool) -> bool:
        if not self.bad or (writing and self.mode == "reads") or (
                not writing and self.mode == "writes"):
            return False
        end = offset + size
        for start, stop in self.bad:
            if start < end and offset < stop:
                return True
            if start >= end:
                break
        return False


class FaultFS(mfusepy.Operations):
    use_ns = True

    def __init__(self, size: int, backing: str, faults: Faults, *, direct_io: bool,
                 verbose: int) -> None:
        self.size = size
        self.faults = faults
        self.direct_io = direct_io
        self.verbose = verbose
        self.trace = verbose >= 2
        self.fd = os.open(backing, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if os.fstat(self.fd).st_size != size:
            os.ftruncate(self.fd, size)  # sparse
        self.now = time.time_ns()
        self.counters = {"reads": 0, "writes": 0, "read_errors": 0, "write_errors": 0,
                         "bytes_read": 0, "bytes_written": 0}

    # -- helpers ---------------------------------------------------------
    def log(self, msg: str) -> None:
        if self.verbose:
            print(f"faultfs: {msg}", file=sys.stderr, flush=True)

    def _check(self, path: str | None) -> None:
        if path is not None and path != DISK_PATH:
            raise mfusepy.FuseOSError(errno.ENOENT)

    def _bounds(self, offset: int, size: int) -> int:
        """Clamp a request to the disk size; returns the usable length."""
        if offset >= self.size:
            return 0
        return min(size, self.size - offset)

    # -- setup -----------------------------------------------------------
    def init_with_config(self, conn, config) -> None:
        if conn is not None:
            # Errors must surface on write(2), not later at writeback/fsync.
            conn.want &= ~FUSE_CAP_WRITEBACK_CACHE
            # Big requests (the kernel clamps these to what it supports).
            conn.max_write = 1 << 20
            if hasattr(conn, "max_read"):
                conn.max_read = 1 << 20
            conn.max_readahead = 1 << 20
            conn.max_background = 64
            conn.congestion_threshold = 48
        if config is not None:
            config.kernel_cache = 0
            config.auto_cache = 0
            config.direct_io = 1 if self.direct_io else 0
            config.attr_timeout = 3600.0  # the size never changes
            config.entry_timeout = 3600.0

    def destroy(self, path: str) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass

    # -- metadata --------------------------------------------------------
    def getattr(self, path: str, fh=None) -> dict[str, Any]:
        times = {"st_atime": self.now, "st_mtime": self.now, "st_ctime": self.now}
        if path == "/":
            return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2, **times}
        if path == DISK_PATH:
            return {"st_mode": stat.S_IFREG | 0o644, "st_nlink": 1, "st_size": self.size,
                    "st_blocks": (self.size + 511) // 512, "st_blksize": 1 << 20, **times}
        raise mfusepy.FuseOSError(errno.ENOENT)

    def readdir(self, path: str, fh) -> list[str]:
        if path != "/":
            raise mfusepy.FuseOSError(errno.ENOTDIR)
        return [".", "..", DISK_NAME]

    def statfs(self, path: str) -> dict[str, int]:
        blocks = (self.size + 4095) // 4096
        return {"f_bsize": 4096, "f_frsize": 4096, "f_blocks": blocks, "f_bfree": 0,
                "f_bavail": 0, "f_files": 2, "f_ffree": 0, "f_favail": 0,
                "f_namemax": 255}

    def access(self, path: str, amode: int) -> int:
        if path not in ("/", DISK_PATH):
            raise mfusepy.FuseOSError(errno.ENOENT)
        return 0

    def truncate(self, path: str, length: int, fh=None) -> int:
        self._check(path)
        if length != self.size:
            raise mfusepy.FuseOSError(errno.EPERM)  # a disk has a fixed size
        return 0

    def chmod(self, path: str, mode: int) -> int:
        raise mfusepy.FuseOSError(errno.EPERM)

    def chown(self, path: str, uid: int, gid: int) -> int:
        raise mfusepy.FuseOSError(errno.EPERM)

    def utimens(self, path: str, times=None) -> int:
        return 0

    # -- open/close --------------------------------------------------------
    def open(self, path: str, fi) -> int:  # raw_fi=True: fi is struct fuse_file_info
        self._check(path)
        fi.fh = 0
        fi.keep_cache = 0
        fi.direct_io = 1 if self.direct_io else 0
        return 0

    def flush(self, path: str, fh) -> int:
        return 0

    def release(self, path: str, fh) -> int:
        return 0

    def fsync(self, path: str, datasync: int, fh) -> int:
        if self.faults.fail_fsync:
            self.log("fsync -> EIO")
            raise mfusepy.FuseOSError(errno.EIO)
        # The backing file's durability does not matter (the daemon only ever
        # dies by signal, and pwrite data is already in the host page cache).
        return 0

    # -- data (the plain Operations API; FaultFUSE below bypasses it) -------
    def read_into(self, addr: int, size: int, offset: int) -> int:
        faults = self.faults
        self.counters["reads"] += 1
        if self.trace:
            self.log(f"read  {offset}+{size}")
        if faults.hits(offset, size, writing=False):
            self.counters["read_errors"] += 1
            self.log(f"read  {offset}+{size} -> EIO")
            raise mfusepy.FuseOSError(errno.EIO)
        size = self._bounds(offset, size)
        if size <= 0:
            return 0
        view = memoryview((ctypes.c_char * size).from_address(addr)).cast("B")
        done = 0
        while done < size:
            n = os.preadv(self.fd, [view[done:]], offset + done)
            if n <= 0:  # hole past EOF of the backing file cannot happen; be safe
                ctypes.memset(addr + done, 0, size - done)
                break
            done += n
        for start, end in faults.rot:          # silent corruption: wrong data, no error
            lo, hi = max(start, offset), min(end, offset + size)
            for at in range(lo - offset, hi - offset):
                view[at] ^= 0xFF
        self.counters["bytes_read"] += size
        return size

    def write_from(self, addr: int, size: int, offset: int) -> int:
        faults = self.faults
        self.counters["writes"] += 1
        if self.trace:
            self.log(f"write {offset}+{size}")
        if faults.hits(offset, size, writing=True):
            self.counters["write_errors"] += 1
            self.log(f"write {offset}+{size} -> EIO")
            raise mfusepy.FuseOSError(errno.EIO)
        if offset >= self.size:
            raise mfusepy.FuseOSError(errno.ENOSPC)
        if faults.write_rate:           # a slow drive: each request takes its time
            time.sleep(size / faults.write_rate)
        size = self._bounds(offset, size)
        view = memoryview((ctypes.c_char * size).from_address(addr)).cast("B")
        done = 0
        while done < size:
            done += os.pwrite(self.fd, view[done:], offset + done)
        self.counters["bytes_written"] += size
        return size

    def read(self, path: str, size: int, offset: int, fh) -> bytes:
        buf = ctypes.create_string_buffer(size)
        n = self.read_into(ctypes.addressof(buf), size, offset)
        return buf.raw[:n]

    def write(self, path: str, data: bytes, offset: int, fh) -> int:
        buf = ctypes.create_string_buffer(data, len(data))
        return self.write_from(ctypes.addressof(buf), len(data), offset)

    def fallocate(self, path: str, mode: int, offset: int, size: int, fh) -> int:
        # The loop driver turns discard / write-zeroes into fallocate.
        if self.faults.hits(offset, size, writing=True):
            self.counters["write_errors"] += 1
            self.log(f"fallocate({mode:#x}) {offset}+{size} -> EIO")
            raise mfusepy.FuseOSError(errno.EIO)
        if offset + size > self.size:
            if not mode & FALLOC_FL_KEEP_SIZE:
                raise mfusepy.FuseOSError(errno.ENOSPC)
            size = self._bounds(offset, size)
            if size <= 0:
                return 0
        if _libc.fallocate(self.fd, mode, offset, size) != 0:
            raise mfusepy.FuseOSError(ctypes.get_errno())
        return 0


class FaultFUSE(mfusepy.FUSE):
    """mfusepy.FUSE with zero-copy read/write callbacks (pread/pwrite straight
    into/from the kernel request buffer instead of going through bytes)."""

    def read(self, path, buf, size, offset, fip):  # noqa: D401 - libfuse callback
        addr = ctypes.cast(buf, ctypes.c_void_p).value
        return self.operations.read_into(addr, size, offset)

    def write(self, path, buf, size, offset, fip):
        addr = ctypes.cast(buf, ctypes.c_void_p).value
        return self.operations.write_from(addr, size, offset)


class ControlWatcher(threading.Thread):
    """Polls the control file and swaps FaultFS.faults when it changes."""

    def __init__(self, fs: FaultFS, path: str, interval: float = 0.01) -> None:
        super().__init__(name="faultfs-control", daemon=True)
        self.fs = fs
        self.path = path
        self.interval = interval
        self.seen: tuple[int, int, int] | None = None

    def run(self) -> None:
        self.ack()
        while True:
            try:
                self.poll()
            except Exception as exc:  # never die: keep the old configuration
                print(f"faultfs: control file {self.path}: {exc}", file=sys.stderr, flush=True)
            time.sleep(self.interval)

    def poll(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key == self.seen:
            return
        with open(self.path, encoding="utf-8") as fh:
            text = fh.read()
        try:
            spec = json.loads(text)
        except json.JSONDecodeError:
            return  # half-written (writer did not rename atomically): retry
        self.seen = key
        old = self.fs.faults
        self.fs.faults = Faults(
            bad=spec.get("bad", ()),
            mode=spec.get("mode", "both"),
            fail_fsync=spec.get("fail_fsync", False),
            generation=spec.get("generation", old.generation + 1),
            write_rate=spec.get("write_rate", 0),
            rot=spec.get("rot", ()),
        )
        bad = [f"{s}:{e - s}" for s, e in self.fs.faults.bad]
        self.fs.log(f"control: generation {self.fs.faults.generation} bad={bad} "
                    f"mode={self.fs.faults.mode} fail_fsync={self.fs.faults.fail_fsync}")
        self.ack()

    def ack(self) -> None:
        state = {"generation": self.fs.faults.generation, "pid": os.getpid(),
                 "bad": [[s, e - s] for s, e in self.fs.faults.bad],
                 "mode": self.fs.faults.mode, "write_rate": self.fs.faults.write_rate,
                 **self.fs.counters}
        tmp = f"{self.path}.applied.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(state, fh)
        os.replace(tmp, f"{self.path}.applied")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mountpoint")
    ap.add_argument("--size", type=parse_size, required=True, help="size of disk.img in bytes")
    ap.add_argument("--backing", required=True, help="sparse file holding the data")
    ap.add_argument("--bad", type=parse_extent, action="append", default=[],
                    metavar="OFFSET:LENGTH", help="byte extent whose I/O fails with EIO")
    only = ap.add_mutually_exclusive_group()
    only.add_argument("--bad-reads-only", action="store_true")
    only.add_argument("--bad-writes-only", action="store_true")
    ap.add_argument("--fail-fsync", action="store_true", help="fsync fails with EIO")
    ap.add_argument("--write-rate", type=parse_size, default=0, metavar="BYTES",
                    help="a slow drive: each write request sleeps its size / BYTES seconds")
    ap.add_argument("--control", help="JSON file re-read when it changes (see module doc)")
    ap.add_argument("--direct-io", action=argparse.BooleanOptionalAction, default=True,
                    help="FOPEN_DIRECT_IO, the default: no kernel page cache for disk.img, so "
                    "every loop request reaches the daemon (--no-direct-io: write-through "
                    "page cache, cached reads keep working after a pull)")
    ap.add_argument("--single-thread", action="store_true")
    ap.add_argument("--verbose", "-v", action="count", default=0,
                    help="log injected errors (-vv: log every read/write request)")
    ap.add_argument("--debug", action="store_true", help="libfuse debug output")
    args = ap.parse_args(argv)

    if args.size <= 0:
        ap.error("--size must be > 0")
    mode = "reads" if args.bad_reads_only else "writes" if args.bad_writes_only else "both"
    fs = FaultFS(args.size, args.backing, Faults(args.bad, mode, args.fail_fsync,
                                                     write_rate=args.write_rate),
                 direct_io=args.direct_io, verbose=args.verbose)
    if args.control:
        ControlWatcher(fs, os.path.abspath(args.control)).start()

    options: dict[str, Any] = {
        "foreground": True,
        "nothreads": args.single_thread,
        "debug": args.debug,
        "fsname": "faultfs",
        "subtype": "faultfs",
        "max_read": 1 << 20,
    }
    if os.geteuid() == 0:
        options["allow_other"] = True
    try:
        FaultFUSE(fs, args.mountpoint, raw_fi=True, **options)
    except RuntimeError as exc:
        # libfuse's fuse_main() returns 8 when its loop ends through a signal
        # (SIGTERM/SIGINT/SIGHUP: clean unmount); anything else is a failure.
        if exc.args != (8,):
            raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
