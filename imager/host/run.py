"""The one place that runs subprocesses: C.UTF-8 locale, timeout, typed result."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from imager.errors import ImagerError

# Which Debian package provides a tool, for the error message.
PACKAGES = {
    "lsblk": "util-linux", "losetup": "util-linux", "hdparm": "hdparm",
    "smartctl": "smartmontools", "nvme": "nvme-cli", "nwipe": "nwipe",
    "sg_opcodes": "sg3-utils", "sg_sanitize": "sg3-utils", "sg_requests": "sg3-utils",
    "sg_inq": "sg3-utils", "mmc": "mmc-utils", "rtcwake": "util-linux",
    "sfdisk": "fdisk", "partx": "util-linux", "blkid": "util-linux", "mount": "mount",
    "umount": "mount", "e2fsck": "e2fsprogs", "resize2fs": "e2fsprogs",
    "dumpe2fs": "e2fsprogs",
}


@dataclass(frozen=True)
class RunResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class ToolFailed(ImagerError):
    def __init__(self, result: RunResult) -> None:
        self.result = result
        err = result.stderr.strip().splitlines()
        tail = err[-1] if err else "(no message)"
        super().__init__(f"{result.argv[0]} exited {result.returncode}: {tail}")


def run(argv: Sequence[str], *, timeout: float = 60, check: bool = True,
        input: str | None = None) -> RunResult:
    """Run a tool and return its output; raise ToolFailed if `check` and it failed."""
    tool = argv[0]
    if shutil.which(tool) is None:
        pkg = PACKAGES.get(tool, tool)
        raise ImagerError(f"the tool {tool!r} is missing: install it (apt-get install {pkg})")
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    start = time.monotonic()
    try:
        # Own session: a Ctrl-C at the terminal must not kill hdparm or nvme-cli in
        # the middle of a firmware erase (the station stops at its next safe point).
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              env=env, input=input, errors="replace", start_new_session=True)
    except subprocess.TimeoutExpired as exc:
        raise ImagerError(f"{tool} did not answer within {timeout:.0f} s") from exc
    result = RunResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr,
                       time.monotonic() - start)
    if check and not result.ok:
        raise ToolFailed(result)
    return result


class Runner(Protocol):
    """What engines and probes call to run a tool: `run`, or a test's fake."""

    def __call__(self, argv: Sequence[str], *, timeout: float = 60, check: bool = True,
                 input: str | None = None) -> RunResult: ...
