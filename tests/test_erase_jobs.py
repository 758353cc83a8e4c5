"""Erase jobs end to end through the real `imager` command on loop devices."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from clirun import imager, job, jobs, json_lines, spawn

from imager.erase.patterns import source_for
from imager.errors import UsageError
from imager.model import ErasePlan, EraseReport
from imager.registry.lifecycle import (
    JOB_STATES,
    JOB_TRANSITIONS,
    RESUMABLE,
    TERMINAL,
    check_move,
)

MiB = 1 << 20


def test_lifecycle_table_is_complete_and_fail_loud() -> None:
    assert set(JOB_TRANSITIONS) == set(JOB_STATES)
    assert all(t <= set(JOB_STATES) for t in JOB_TRANSITIONS.values())
    assert TERMINAL == {"erased", "imaged", "unverified", "failed", "cancelled"}
    into_erased = [s for s, moves in JOB_TRANSITIONS.items() if "erased" in moves]
    assert into_erased == ["running"]  # only a run that finished can erase
    assert RESUMABLE == {"interrupted"} and "running" in JOB_TRANSITIONS["interrupted"]
    assert "interrupted" in JOB_TRANSITIONS["running"]
    with pytest.raises(UsageError, match="cannot become imaged"):
        check_move(1, "running", "imaged")                    # an erase job never "images"
    with pytest.raises(UsageError, match="cannot become erased"):
        check_move(1, "running", "erased", kind="image")      # nor an image job "erases"
    check_move(1, "running", "imaged", kind="image")


def _content_ok(dev: str, plan: ErasePlan, size: int) -> bool:
    src = source_for(plan.passes[-1])
    with open(dev, "rb") as fh:
        for off in (0, size // 3 // 4096 * 4096, size - 4096):
            fh.seek(off)
            if fh.read(4096) != src.expected(4096, off):
                return False
    return True


@pytest.mark.root
def test_erase_reports_json_lines_and_records_the_job(loopdev: Callable[..., str],
                                                      tmp_path: Path) -> None:
    dev = loopdev(32 * MiB)
    out = imager(tmp_path, "erase", dev, "--method", "dod-3pass", "--verify", "full", "--json")
    lines = json_lines(out.stdout)
    assert any(ln["event"] == "progress" for ln in lines)
    report = EraseReport.from_dict({k: v for k, v in lines[-1].items()
                                    if k not in ("event", "job", "duration_seconds",
                                                 "bytes_written",
                                                 "throughput_bytes_per_second")})
    assert report.outcome == "erased" and report.device.path == dev
    assert report.device.key.startswith("loop:") and report.device.size == 32 * MiB
    assert [p.pattern for p in report.passes] == ["zero", "ones", "random"]
    assert report.verification and report.verification.coverage == 1.0
    assert lines[-1]["bytes_written"] == 3 * 32 * MiB
    assert lines[-1]["throughput_bytes_per_second"] > 0
    assert _content_ok(dev, report.plan, 32 * MiB)
    shown = job(tmp_path, lines[-1]["job"])
    kinds = [e["kind"] for e in shown["events"]]
    assert kinds[:2] == ["created", "running"] and kinds[-1] == "erased"
    assert kinds.count("pass_completed") == 3
    assert shown["report"]["outcome"] == "erased"


@pytest.mark.root
def test_skipped_verification_is_never_reported_erased(loopdev: Callable[..., str],
                                                       tmp_path: Path) -> None:
    dev = loopdev(8 * MiB)
    out = imager(tmp_path, "erase", dev, "--verify", "none", "--json")
    assert json_lines(out.stdout)[-1]["outcome"] == "unverified"
    assert jobs(tmp_path)[0]["state"] == "unverified"


@pytest.mark.root
def test_plan_is_printed_without_writing(loopdev: Callable[..., str], tmp_path: Path) -> None:
    dev = loopdev(8 * MiB)
    with open(dev, "r+b") as fh:
        fh.write(b"donor data")
    out = imager(tmp_path, "erase", "--plan", dev, "--method", "random-zero", "--json")
    assert '"kind": "random"' in out.stdout and '"seed"' in out.stdout
    text = imager(tmp_path, "erase", "--plan", dev).stdout
    assert "1. nist-clear" in text and "Clear (effacement logique)" in text
    with open(dev, "rb") as fh:
        assert fh.read(10) == b"donor data"
    assert not (tmp_path / "registry.sqlite3").exists() or jobs(tmp_path) == []


@pytest.mark.root
def test_refused_device_erases_nothing(loopdev: Callable[..., str], tmp_path: Path) -> None:
    good, ro = loopdev(8 * MiB), loopdev(8 * MiB, read_only=True)
    with open(good, "r+b") as fh:
        fh.write(b"donor data")
    proc = imager(tmp_path, "erase", good, ro, check=False)
    assert proc.returncode == 2 and f"refusing to write {ro}" in proc.stderr
    assert "read-only" in proc.stderr
    with open(good, "rb") as fh:
        assert fh.read(10) == b"donor data"


@pytest.mark.root
def test_four_drives_erase_in_parallel(loopdev: Callable[..., str], tmp_path: Path) -> None:
    devs = [loopdev(96 * MiB) for _ in range(4)]
    out = imager(tmp_path, "erase", *devs, "--method", "random", "--json")
    reports = [ln for ln in json_lines(out.stdout) if ln["event"] == "report"]
    assert sorted(r["device"]["path"] for r in reports) == sorted(devs)
    assert all(r["outcome"] == "erased" for r in reports)
    spans = [(datetime.fromisoformat(r["started_at"]), datetime.fromisoformat(r["ended_at"]))
             for r in reports]
    assert max(s for s, _ in spans) < min(e for _, e in spans)  # all ran at once
    assert len({r["plan"]["steps"][0]["passes"][0]["seed"] for r in reports}) == 4


def _checkpoint(db: Path, job_id: int = 1) -> str | None:
    if not db.exists():
        return None
    con = sqlite3.connect(db, timeout=5)
    try:
        row = con.execute("select checkpoint from jobs where id=?", (job_id,)).fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        con.close()
    return row[0] if row else None


def _wait_for_checkpoint(db: Path, proc, pred: Callable[[dict], bool]) -> dict:  # type: ignore[no-untyped-def]
    import json
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        raw = _checkpoint(db)
        if raw and pred(json.loads(raw)):
            return json.loads(raw)
        assert proc.poll() is None, f"erase ended before the checkpoint: {proc.stderr.read()}"
        time.sleep(0.01)
    raise AssertionError("no checkpoint within 60 s")


@pytest.mark.root
def test_kill_9_mid_erase_then_resume(loopdev: Callable[..., str], tmp_path: Path) -> None:
    size = 768 * MiB
    dev = loopdev(size)
    proc = spawn(tmp_path, "erase", dev, "--method", "dod-3pass", "--verify", "full",
                 "--json", IMAGER_CHECKPOINT_SECONDS="0.05")
    cp = _wait_for_checkpoint(tmp_path / "registry.sqlite3", proc,
                              lambda c: c["index"] == 1 and c["offset"] > 0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    listed = jobs(tmp_path)
    assert listed[0]["state"] == "interrupted"
    assert f"pid {proc.pid}" in listed[0]["reason"] and "jobs resume 1" in listed[0]["reason"]
    assert listed[0]["checkpoint"]["index"] >= cp["index"]
    out = imager(tmp_path, "jobs", "resume", "--json")
    report = json_lines(out.stdout)[-1]
    assert report["outcome"] == "erased"
    assert [p["index"] for p in report["passes"]] == [0, 1, 2]
    assert all(p["bytes_written"] == size for p in report["passes"])
    assert report["bytes_written"] == 3 * size
    shown = job(tmp_path, 1)
    resumed = [e for e in shown["events"] if e["kind"] == "resumed"]
    assert resumed and "pass 2" in resumed[0]["message"]
    kinds = [e["kind"] for e in shown["events"]]
    assert kinds.index("interrupted") < kinds.index("resumed") < kinds.index("erased")
    assert _content_ok(dev, ErasePlan.from_dict(shown["plan"]), size)


@pytest.mark.root
def test_sigterm_interrupts_cleanly_and_resume_refuses_another_drive(
        loopdev: Callable[..., str], tmp_path: Path) -> None:
    dev, other = loopdev(768 * MiB), loopdev(8 * MiB)
    proc = spawn(tmp_path, "erase", dev, "--method", "random-zero", "--json",
                 IMAGER_CHECKPOINT_SECONDS="0.05")
    _wait_for_checkpoint(tmp_path / "registry.sqlite3", proc, lambda c: c["offset"] > 0)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    assert jobs(tmp_path)[0]["state"] == "interrupted"
    wrong = imager(tmp_path, "jobs", "resume", "1", "--device", other, check=False)
    assert wrong.returncode != 0
    assert jobs(tmp_path)[0]["state"] == "interrupted"  # still waiting for its drive
    assert "is not the drive of job 1" in job(tmp_path, 1)["events"][-1]["message"]
    done = imager(tmp_path, "jobs", "resume", "1", "--json")
    assert json_lines(done.stdout)[-1]["outcome"] == "erased"


@pytest.mark.root
def test_kill_9_during_verification_then_resume(loopdev: Callable[..., str],
                                                tmp_path: Path) -> None:
    size = 768 * MiB
    dev = loopdev(size)
    proc = spawn(tmp_path, "erase", dev, "--method", "random", "--verify", "full", "--json",
                 IMAGER_CHECKPOINT_SECONDS="0.05")
    _wait_for_checkpoint(tmp_path / "registry.sqlite3", proc, lambda c: c["index"] == 1)
    os.kill(proc.pid, signal.SIGKILL)  # the pass is done; verification was running
    proc.wait()
    assert jobs(tmp_path)[0]["state"] == "interrupted"
    report = json_lines(imager(tmp_path, "jobs", "resume", "--json").stdout)[-1]
    assert report["outcome"] == "erased" and report["verification"]["coverage"] == 1.0
    assert [p["bytes_written"] for p in report["passes"]] == [size]


@pytest.mark.root
def test_cancel_an_interrupted_job(loopdev: Callable[..., str], tmp_path: Path) -> None:
    dev = loopdev(768 * MiB)
    proc = spawn(tmp_path, "erase", dev, "--method", "random-zero", "--json",
                 IMAGER_CHECKPOINT_SECONDS="0.05")
    _wait_for_checkpoint(tmp_path / "registry.sqlite3", proc, lambda c: c["offset"] > 0)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    imager(tmp_path, "jobs", "cancel", "1", "--reason", "disque détruit")
    listed = jobs(tmp_path)[0]
    assert listed["state"] == "cancelled" and listed["reason"] == "disque détruit"
    assert "Aucune tâche interrompue" in imager(tmp_path, "jobs", "resume").stdout
