"""Long-running tools whose output is followed line by line (mmdebstrap, mkfs):
the same rules as `imager.host.run` (C.UTF-8, timeout, typed result), plus extra
environment variables and a callback for each line as it comes."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from imager.errors import ImagerError
from imager.host.run import PACKAGES, RunResult, ToolFailed

# Tools of the OS image build, for the "install it" message (beside run.PACKAGES).
BUILD_PACKAGES = {
    "mmdebstrap": "mmdebstrap", "sgdisk": "gdisk", "mkfs.ext4": "e2fsprogs",
    "mkfs.vfat": "dosfstools", "mcopy": "mtools", "mmd": "mtools", "debugfs": "e2fsprogs",
    "dpkg-deb": "dpkg", "chroot": "coreutils", "tar": "tar", "zstd": "zstd",
}
LineFn = Callable[[str], None]


def require_tool(tool: str) -> None:
    """ImagerError naming the Debian package when `tool` is not installed."""
    if shutil.which(tool) is None:
        pkg = BUILD_PACKAGES.get(tool) or PACKAGES.get(tool, tool)
        raise ImagerError(f"outil absent / the tool {tool!r} is missing: install it "
                          f"(apt-get install {pkg})")


def run_streaming(argv: Sequence[str], *, on_line: LineFn | None = None,
                  env: Mapping[str, str] | None = None, cwd: Path | None = None,
                  timeout: float = 3600, check: bool = True) -> RunResult:
    """Run a tool, its stderr merged into stdout, calling `on_line` for each line.

    The result's stdout holds the whole output; ToolFailed (with its last line)
    when `check` and the tool failed; ImagerError after `timeout` seconds (the
    tool is killed)."""
    require_tool(argv[0])
    full_env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", **(env or {})}
    start = time.monotonic()
    proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace",
                            env=full_env, cwd=cwd, start_new_session=True)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if on_line is not None:
                on_line(line.rstrip("\n"))
        proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        timer.cancel()
    seconds = time.monotonic() - start
    if seconds >= timeout and proc.returncode != 0:
        raise ImagerError(f"{argv[0]} n'a pas fini en / did not finish within {timeout:.0f} s")
    out = "".join(lines)
    result = RunResult(tuple(argv), proc.returncode, out, out, seconds)
    if check and not result.ok:
        raise ToolFailed(result)
    return result
