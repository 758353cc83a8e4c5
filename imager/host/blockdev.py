"""Open block devices (or files standing for one) for erasure and read-back.

Writes use O_EXCL (the kernel refuses if mounted or held elsewhere) and
O_DIRECT where the device allows it, with page-aligned buffers.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import stat
import struct
from dataclasses import dataclass

from imager.errors import DeviceError, DeviceGone, RefusedDevice

BLKGETSIZE64 = 0x80081272
BLKSSZGET = 0x1268
BLKPBSZGET = 0x127B
BLKROGET = 0x125E

GONE_ERRNOS = {errno.ENODEV, errno.ENXIO, errno.ENOMEDIUM, errno.ENOTCONN}


def aligned_buffer(size: int) -> mmap.mmap:
    """A page-aligned anonymous buffer with one spare page (cipher slack)."""
    return mmap.mmap(-1, size + mmap.PAGESIZE)


def _ioctl_int(fd: int, request: int, fmt: str) -> int:
    buf = fcntl.ioctl(fd, request, bytes(struct.calcsize(fmt)))
    return int(struct.unpack(fmt, buf)[0])


@dataclass
class OpenDevice:
    """An open device: positional I/O on `fd`, sizes known."""

    path: str
    fd: int
    size: int
    logical_sector: int
    physical_sector: int
    direct: bool
    is_block: bool
    writable: bool

    def pwrite(self, view: memoryview, offset: int) -> None:
        """Write all of `view` at `offset` (loops over short writes)."""
        done = 0
        while done < len(view):
            n = os.pwrite(self.fd, view[done:], offset + done)
            if n <= 0:
                raise OSError(errno.EIO, f"short write at {offset + done}")
            done += n

    def preadinto(self, view: memoryview, offset: int) -> None:
        """Fill `view` from `offset`; a short read (end of device) is an error."""
        done = 0
        while done < len(view):
            n = os.preadv(self.fd, [view[done:]], offset + done)
            if n <= 0:
                raise OSError(errno.EIO, f"short read at {offset + done}")
            done += n

    def flush(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> OpenDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_gone(exc: OSError) -> bool:
    return exc.errno in GONE_ERRNOS


def _open_fd(path: str, flags: int) -> tuple[int, bool]:
    """Open with O_DIRECT when the device/file system accepts it."""
    try:
        return os.open(path, flags | os.O_DIRECT), True
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
    return os.open(path, flags), False


def _describe_open_error(path: str, exc: OSError, writing: bool) -> Exception:
    if exc.errno == errno.EBUSY:
        return RefusedDevice(path, ["device is in use: mounted, held by another device "
                                    "(RAID/LVM) or opened exclusively by another program"])
    if exc.errno in (errno.EACCES, errno.EPERM) and os.geteuid() != 0:
        return DeviceError(f"permission denied opening {path}: run imager as root (sudo)")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM) and writing:
        return RefusedDevice(path, [f"device is read-only or not writable ({exc.strerror}); "
                                    "check the write-protect switch or the dock"])
    if exc.errno == errno.ENOENT:
        return DeviceGone(f"{path} does not exist: is the drive plugged in?")
    if is_gone(exc):
        return DeviceGone(f"{path} is gone ({exc.strerror}): was the drive unplugged?")
    return DeviceError(f"cannot open {path}: {exc.strerror}")


def open_device(path: str, *, write: bool) -> OpenDevice:
    """Open `path` for erasure (write=True, exclusive) or for read-back."""
    flags = (os.O_RDWR | os.O_EXCL if write else os.O_RDONLY) | os.O_CLOEXEC
    try:
        fd, direct = _open_fd(path, flags)
    except OSError as exc:
        raise _describe_open_error(path, exc, write) from exc
    try:
        return _describe(path, fd, direct, write)
    except BaseException:
        os.close(fd)
        raise


def _describe(path: str, fd: int, direct: bool, write: bool) -> OpenDevice:
    st = os.fstat(fd)
    if stat.S_ISBLK(st.st_mode):
        if write and _ioctl_int(fd, BLKROGET, "i"):
            raise RefusedDevice(path, ["device is read-only (kernel read-only flag)"])
        size = _ioctl_int(fd, BLKGETSIZE64, "Q")
        logical = _ioctl_int(fd, BLKSSZGET, "i")
        physical = _ioctl_int(fd, BLKPBSZGET, "I")
        return OpenDevice(path, fd, size, logical, max(physical, logical), direct, True, write)
    if stat.S_ISREG(st.st_mode):
        if st.st_size % 512:
            raise RefusedDevice(path, [f"size {st.st_size} is not a multiple of 512 bytes: "
                                       "not a disk image"])
        sector = 512 if st.st_size % 4096 else 4096
        return OpenDevice(path, fd, st.st_size, sector, sector, direct, False, write)
    raise RefusedDevice(path, ["not a block device nor a regular file"])


def drop_cache(dev: OpenDevice) -> None:
    """Make later reads come from the medium, not from the page cache."""
    os.fsync(dev.fd)
    os.posix_fadvise(dev.fd, 0, 0, os.POSIX_FADV_DONTNEED)
    if dev.is_block:
        fcntl.ioctl(dev.fd, 0x1261)  # BLKFLSBUF
