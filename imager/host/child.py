"""Long-running child processes (dnsmasq): started, watched, stopped.

The same rules as `imager.host.run` (C.UTF-8, a missing tool named with its
Debian package), for a daemon kept in the foreground whose output goes to a
log file. `stop()` ends it (SIGTERM, then SIGKILL) and is safe to call twice.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from imager.errors import ImagerError
from imager.host.stream import require_tool

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the process that started it dies
    (a station killed hard leaves no dnsmasq answering on the bench)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class ChildFailed(ImagerError):
    """A child process stopped on its own; the message ends with its log."""


class Child:
    """One child process, its output appended to `log`."""

    def __init__(self, argv: Sequence[str], *, log: Path, name: str) -> None:
        self.argv = tuple(argv)
        self.log = log
        self.name = name
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, *, settle: float = 0.5) -> None:
        """Start it; ChildFailed when it has exited after `settle` seconds. It is
        ended when the thread that started it ends: start it from the thread that
        lives as long as it should (the service's main thread)."""
        require_tool(self.argv[0])
        env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        with open(self.log, "ab") as out:
            self._proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, env=env,
                                          start_new_session=True,
                                          preexec_fn=_die_with_parent)
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline and self._proc.poll() is None:
            time.sleep(0.05)
        self.check()

    def check(self) -> None:
        """ChildFailed when it exited."""
        if self._proc is not None and self._proc.poll() is not None:
            code = self._proc.returncode
            raise ChildFailed(f"{self.name} stopped (exit {code}): "
                              f"{self.tail() or '(no output)'} (log: {self.log})")

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def stop(self, timeout: float = 5) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
