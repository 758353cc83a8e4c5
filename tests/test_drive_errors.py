"""A drive that fails: real EIO from a FUSE-backed loop device, and a drive
pulled out of its dock mid-erase. Neither may ever end `erased`."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from clirun import imager, job, jobs, json_lines, spawn

MiB = 1 << 20


def _zeros_at(path: Path | str, offset: int, n: int = 4096) -> bool:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(n) == bytes(n)


@pytest.mark.root
def test_eio_mid_erase_fails_with_the_extent_and_erases_the_rest(
        faultdisk: Callable[..., object], tmp_path: Path) -> None:
    bad = 20 * MiB + 8192
    disk = faultdisk(64 * MiB, [(bad, 4096)])
    with open(disk.backing, "r+b") as fh:  # donor data everywhere
        fh.write(os.urandom(64 * MiB))
    out = imager(tmp_path, "erase", disk.device, "--method", "zero", "--verify", "full",
                 "--json", check=False)
    assert out.returncode == 1
    report = json_lines(out.stdout)[-1]
    assert report["outcome"] == "failed"
    assert report["errors"] == [{"offset": bad, "length": 4096,
                                 "error": "Input/output error"}]
    assert f"first at offset {bad}" in report["reason"]
    assert report["verification"] is None
    assert report["passes"][0]["bytes_written"] == 64 * MiB - 4096
    for off in (0, bad - 4096, bad + 4096, 64 * MiB - 4096):  # the rest was erased
        assert _zeros_at(disk.backing, off)
    assert not _zeros_at(disk.backing, bad)  # the bad sector still holds donor data
    assert disk.stats()["write_errors"] >= 3  # first try, the retry, then sector by sector
    listed = jobs(tmp_path)[0]
    assert listed["state"] == "failed"
    events = job(tmp_path, listed["id"])["events"]
    assert any(e["kind"] == "io_error" and str(bad) in e["message"] for e in events)


@pytest.mark.root
def test_unreadable_sectors_fail_the_verification(faultdisk: Callable[..., object],
                                                  tmp_path: Path) -> None:
    bad = 40 * MiB
    disk = faultdisk(64 * MiB, [(bad, 8192)], mode="reads")
    out = imager(tmp_path, "erase", disk.device, "--method", "random", "--verify", "full",
                 "--json", check=False)
    report = json_lines(out.stdout)[-1]
    assert out.returncode == 1 and report["outcome"] == "failed"
    assert "verification could not read" in report["reason"]
    ver = report["verification"]
    assert ver["ok"] is False
    assert ver["failed_extents"] == [{"offset": bad, "length": 8192,
                                      "error": "read: Input/output error"}]
    assert ver["bytes_read"] == 64 * MiB - 8192
    assert jobs(tmp_path)[0]["state"] == "failed"


@pytest.mark.root
def test_drive_pulled_mid_erase_fails_cleanly(faultdisk: Callable[..., object],
                                              tmp_path: Path) -> None:
    disk = faultdisk(512 * MiB)
    proc = spawn(tmp_path, "erase", disk.device, "--method", "dod-3pass", "--json",
                 IMAGER_CHECKPOINT_SECONDS="0.05")
    # Pull once the drive has really been written to (the daemon counts what
    # reaches it), well before the three passes can end, however fast the disk.
    deadline = time.monotonic() + 60
    while disk.stats()["bytes_written"] < 32 * MiB:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "the erase wrote nothing in 60 s"
        time.sleep(0.01)
    disk.pull()
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except Exception:
        proc.send_signal(signal.SIGKILL)
        raise
    assert proc.returncode == 1, stderr
    report = json_lines(stdout)[-1]
    assert report["outcome"] == "failed"
    assert "stopped answering" in report["reason"] or "gone" in report["reason"]
    assert jobs(tmp_path)[0]["state"] == "failed"
