"""Loop devices over image files, with their partitions, always detached after use;
and mounts that are always undone (the OS image build's chroot)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from imager.errors import ImagerError
from imager.host.run import run


@contextmanager
def attached(image: Path, *, partitions: int = 0, timeout: float = 10) -> Iterator[str]:
    """Attach `image` to a free loop device and yield its path (/dev/loopN); with
    `partitions`, add its partitions (partx: the kernel's own scan does not work
    everywhere) and wait until their nodes exist. The partitions are deleted
    before detaching (the kernel would keep partx's after the detach)."""
    dev = run(["losetup", "--find", "--show", str(image)]).stdout.strip()
    try:
        if partitions:
            run(["partx", "--add", dev])
            _wait_partitions(dev, partitions, timeout)
        yield dev
    finally:
        if partitions:
            run(["partx", "--delete", dev], check=False)
        run(["losetup", "--detach", dev], check=False)


def partition(dev: str, number: int) -> str:
    """/dev/loop3, 2 -> /dev/loop3p2."""
    return f"{dev}p{number}"


def _wait_partitions(dev: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    missing = [partition(dev, n) for n in range(1, count + 1)]
    while missing:
        missing = [p for p in missing if not Path(p).exists()]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise ImagerError(f"partitions absentes / {', '.join(missing)} did not appear "
                              f"within {timeout:.0f} s after attaching {dev}: is udev or "
                              "devtmpfs working? (`losetup -P` needs partition support)")
        time.sleep(0.1)


@contextmanager
def mounted(source: str, target: Path, *, options: Sequence[str] = (),
            fstype: str | None = None) -> Iterator[Path]:
    """Mount `source` on `target` for the block; always unmounted after."""
    argv = ["mount", *(["-t", fstype] if fstype else []),
            *(["-o", ",".join(options)] if options else []), source, str(target)]
    run(argv)
    try:
        yield target
    finally:
        if not run(["umount", str(target)], check=False).ok:
            run(["umount", "--lazy", str(target)], check=False)


@contextmanager
def chroot_mounts(root: Path) -> Iterator[Path]:
    """/dev (bound), /proc and /sys mounted inside `root` for tools run with chroot."""
    with ExitStack() as stack:
        stack.enter_context(mounted("/dev", root / "dev", options=("bind",)))
        stack.enter_context(mounted("proc", root / "proc", fstype="proc"))
        stack.enter_context(mounted("sysfs", root / "sys", fstype="sysfs"))
        yield root
